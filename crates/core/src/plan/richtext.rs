//! Rich text of plan sections: the Markdown subset partners write, mapped to and from
//! Automerge's rich-text model (block markers and marks in a text object).
//!
//! A section's text object holds a block marker before every paragraph, heading and
//! list item, and marks over runs of text. The block and mark names follow the
//! conventions of `automerge-prosemirror`, so an editor built on it opens a section
//! as it is:
//!
//! | Markdown | Automerge |
//! |---|---|
//! | paragraph | block `{type: "paragraph", parents: [], attrs: {}}` |
//! | `#`…`######` heading | block `{type: "heading", parents: [], attrs: {level: n}}` |
//! | `- item` | block `{type: "unordered-list-item", parents: [], attrs: {}}` |
//! | `1. item` | block `{type: "ordered-list-item", parents: [], attrs: {}}` |
//! | `**strong**` | mark `strong` = `true` |
//! | `_emphasis_` | mark `em` = `true` |
//! | `[text](url)` | mark `link` = the URL (a string) |
//!
//! Everything else Markdown has (quotes, code, tables, nested lists) is kept as the
//! text it contains. Markdown parsing is `pulldown-cmark`'s (CommonMark); writing
//! Markdown back is done here because no crate writes this mapping, and it escapes
//! what would otherwise read back differently.

use std::collections::HashMap;
use std::sync::Arc;

use automerge::iter::Span;
use automerge::marks::MarkSet;
use automerge::{ScalarValue, hydrate};
use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};
use serde::{Deserialize, Serialize};

/// What kind of block a paragraph of a section is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum BlockKind {
    /// A paragraph.
    Paragraph,
    /// A heading inside the section, level 1 to 6.
    Heading {
        /// 1 (largest) to 6.
        level: u8,
    },
    /// An item of a bulleted list.
    Bullet,
    /// An item of a numbered list.
    Numbered,
}

/// A run of text with the same marks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// The text.
    pub text: String,
    /// Bold (`strong`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strong: bool,
    /// Italic (`em`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub em: bool,
    /// Link target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

impl Run {
    fn same_marks(&self, other: &Run) -> bool {
        self.strong == other.strong && self.em == other.em && self.link == other.link
    }
}

/// A paragraph, heading or list item with its runs of text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// What kind of block.
    #[serde(flatten)]
    pub kind: BlockKind,
    /// Its text, in runs with the same marks.
    pub runs: Vec<Run>,
}

impl Block {
    /// The block's text without marks.
    pub fn plain(&self) -> String {
        self.runs.iter().map(|r| r.text.as_str()).collect()
    }
}

/// The character Automerge shows for a block marker in a text object.
pub const BLOCK_PLACEHOLDER: char = '\u{fffc}';

/// Parses Markdown into blocks (see the module docs for the subset).
pub fn parse_markdown(md: &str) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut strong = 0usize;
    let mut em = 0usize;
    let mut links: Vec<String> = Vec::new();
    let mut list: Vec<BlockKind> = Vec::new();
    // Inside a list item, the item's own first paragraph is not a new block.
    let mut item_open = false;
    let open = |blocks: &mut Vec<Block>, kind| {
        blocks.push(Block {
            kind,
            runs: Vec::new(),
        })
    };
    for event in Parser::new(md) {
        match event {
            Event::Start(Tag::Paragraph) => {
                if item_open {
                    item_open = false;
                } else {
                    open(&mut blocks, BlockKind::Paragraph);
                }
            }
            Event::Start(Tag::Heading { level, .. }) => {
                item_open = false;
                open(
                    &mut blocks,
                    BlockKind::Heading {
                        level: heading_level(level),
                    },
                );
            }
            Event::Start(Tag::List(start)) => list.push(if start.is_some() {
                BlockKind::Numbered
            } else {
                BlockKind::Bullet
            }),
            Event::End(TagEnd::List(_)) => {
                list.pop();
                item_open = false;
            }
            Event::Start(Tag::Item) => {
                open(
                    &mut blocks,
                    list.last().copied().unwrap_or(BlockKind::Bullet),
                );
                item_open = true;
            }
            Event::Start(Tag::CodeBlock(_)) => {
                item_open = false;
                open(&mut blocks, BlockKind::Paragraph);
            }
            Event::Start(Tag::Strong) => strong += 1,
            Event::End(TagEnd::Strong) => strong = strong.saturating_sub(1),
            Event::Start(Tag::Emphasis) => em += 1,
            Event::End(TagEnd::Emphasis) => em = em.saturating_sub(1),
            Event::Start(Tag::Link { dest_url, .. }) => links.push(dest_url.to_string()),
            Event::End(TagEnd::Link) => {
                links.pop();
            }
            Event::Text(t) | Event::Code(t) | Event::InlineHtml(t) | Event::Html(t) => {
                let text = t.trim_end_matches('\n');
                push_text(&mut blocks, text, strong > 0, em > 0, links.last().cloned());
            }
            Event::SoftBreak | Event::HardBreak => {
                push_text(&mut blocks, "\n", strong > 0, em > 0, links.last().cloned());
            }
            _ => {}
        }
    }
    blocks
}

fn heading_level(l: HeadingLevel) -> u8 {
    match l {
        HeadingLevel::H1 => 1,
        HeadingLevel::H2 => 2,
        HeadingLevel::H3 => 3,
        HeadingLevel::H4 => 4,
        HeadingLevel::H5 => 5,
        HeadingLevel::H6 => 6,
    }
}

fn push_text(blocks: &mut Vec<Block>, text: &str, strong: bool, em: bool, link: Option<String>) {
    if text.is_empty() {
        return;
    }
    if blocks.is_empty() {
        blocks.push(Block {
            kind: BlockKind::Paragraph,
            runs: Vec::new(),
        });
    }
    let Some(block) = blocks.last_mut() else {
        return;
    };
    let run = Run {
        text: text.to_owned(),
        strong,
        em,
        link,
    };
    match block.runs.last_mut() {
        Some(last) if last.same_marks(&run) => last.text.push_str(text),
        _ => block.runs.push(run),
    }
}

/// The Automerge spans of `blocks`, for [`automerge::transaction::Transactable::update_spans`].
pub fn to_spans(blocks: &[Block]) -> Vec<Span> {
    let mut spans = Vec::new();
    for b in blocks {
        let mut attrs: HashMap<&str, hydrate::Value> = HashMap::new();
        let ty = match b.kind {
            BlockKind::Paragraph => "paragraph",
            BlockKind::Heading { level } => {
                attrs.insert("level", hydrate::Value::from(i64::from(level)));
                "heading"
            }
            BlockKind::Bullet => "unordered-list-item",
            BlockKind::Numbered => "ordered-list-item",
        };
        let map = hydrate::Map::from(HashMap::from([
            ("type", hydrate::Value::from(ScalarValue::Str(ty.into()))),
            ("parents", hydrate::Value::List(hydrate::List::default())),
            ("attrs", hydrate::Value::Map(hydrate::Map::from(attrs))),
        ]));
        spans.push(Span::Block(map));
        for r in &b.runs {
            let mut marks: Vec<(String, ScalarValue)> = Vec::new();
            if r.strong {
                marks.push(("strong".into(), ScalarValue::Boolean(true)));
            }
            if r.em {
                marks.push(("em".into(), ScalarValue::Boolean(true)));
            }
            if let Some(l) = &r.link {
                marks.push(("link".into(), ScalarValue::Str(l.as_str().into())));
            }
            spans.push(Span::Text {
                text: r.text.clone(),
                marks: (!marks.is_empty())
                    .then(|| Arc::new(marks.into_iter().collect::<MarkSet>())),
            });
        }
    }
    spans
}

/// The blocks of a section's spans, and whether the text had any block marker (a
/// text without any, written by schema version 1 or by another tool, is Markdown
/// source and is parsed as such).
pub fn from_spans(spans: impl IntoIterator<Item = Span>) -> (Vec<Block>, bool) {
    let mut blocks: Vec<Block> = Vec::new();
    let mut any_block = false;
    let mut loose = String::new();
    for span in spans {
        match span {
            Span::Block(map) => {
                any_block = true;
                blocks.push(Block {
                    kind: block_kind(&map),
                    runs: Vec::new(),
                });
            }
            Span::Text { text, marks } => {
                if !any_block {
                    loose.push_str(&text);
                    continue;
                }
                let mut strong = false;
                let mut em = false;
                let mut link = None;
                if let Some(m) = marks {
                    for (name, value) in m.iter() {
                        match (name, value) {
                            ("strong", ScalarValue::Boolean(true)) => strong = true,
                            ("em", ScalarValue::Boolean(true)) => em = true,
                            ("link", ScalarValue::Str(s)) => link = Some(s.to_string()),
                            _ => {}
                        }
                    }
                }
                push_text(&mut blocks, &text, strong, em, link);
            }
        }
    }
    if !loose.is_empty() {
        let mut head = parse_markdown(&loose);
        head.append(&mut blocks);
        blocks = head;
    }
    (blocks, any_block)
}

fn block_kind(map: &hydrate::Map) -> BlockKind {
    let ty = match map.get("type") {
        Some(hydrate::Value::Scalar(ScalarValue::Str(s))) => s.to_string(),
        _ => String::new(),
    };
    match ty.as_str() {
        "heading" => {
            let level = match map.get("attrs") {
                Some(hydrate::Value::Map(a)) => match a.get("level") {
                    Some(hydrate::Value::Scalar(ScalarValue::Int(n))) => *n,
                    Some(hydrate::Value::Scalar(ScalarValue::Uint(n))) => {
                        i64::try_from(*n).unwrap_or(1)
                    }
                    _ => 1,
                },
                _ => 1,
            };
            BlockKind::Heading {
                level: u8::try_from(level.clamp(1, 6)).unwrap_or(1),
            }
        }
        "unordered-list-item" => BlockKind::Bullet,
        "ordered-list-item" => BlockKind::Numbered,
        // Paragraphs, and block types of other editors, read as paragraphs.
        _ => BlockKind::Paragraph,
    }
}

/// Writes blocks as Markdown that [`parse_markdown`] reads back as the same blocks.
pub fn to_markdown(blocks: &[Block]) -> String {
    let mut out = String::new();
    let mut number = 0u32;
    let mut prev: Option<BlockKind> = None;
    for b in blocks.iter().filter(|b| !b.runs.is_empty()) {
        if let Some(p) = prev {
            let same_list = p == b.kind && matches!(p, BlockKind::Bullet | BlockKind::Numbered);
            out.push_str(if same_list { "\n" } else { "\n\n" });
        }
        let prefix = match b.kind {
            BlockKind::Paragraph => String::new(),
            BlockKind::Heading { level } => format!("{} ", "#".repeat(level as usize)),
            BlockKind::Bullet => "- ".into(),
            BlockKind::Numbered => {
                number = if prev == Some(BlockKind::Numbered) {
                    number + 1
                } else {
                    1
                };
                format!("{number}. ")
            }
        };
        out.push_str(&prefix);
        // Continuation lines of a list item are indented to stay in the item.
        let indent = if matches!(b.kind, BlockKind::Bullet | BlockKind::Numbered) {
            " ".repeat(prefix.len())
        } else {
            String::new()
        };
        let mut inline = String::new();
        for r in &b.runs {
            inline.push_str(&run_markdown(r));
        }
        out.push_str(&inline.replace('\n', &format!("\n{indent}")));
        prev = Some(b.kind);
    }
    out
}

fn run_markdown(r: &Run) -> String {
    // Emphasis delimiters must touch the text: spaces go outside them.
    let core = r.text.trim_matches(|c: char| c == ' ' || c == '\n');
    if core.is_empty() {
        return escape_markdown(&r.text);
    }
    let start = r.text.find(core).unwrap_or(0);
    let lead = &r.text[..start];
    let trail = &r.text[start + core.len()..];
    let mut s = escape_markdown(core);
    if r.em {
        s = format!("_{s}_");
    }
    if r.strong {
        s = format!("**{s}**");
    }
    let s = format!("{}{s}{}", escape_markdown(lead), escape_markdown(trail));
    // A link to anything but http(s) or mailto keeps its text and loses its target,
    // as in HTML.
    match r.link.as_deref().filter(|u| safe_url(u)) {
        Some(url) => {
            let url = url.replace(['<', '>', '\n'], "");
            if r.text == url && !r.em && !r.strong {
                // An autolink stays one: `<https://…>`.
                format!("<{url}>")
            } else if url.contains([' ', '(', ')', '\\']) {
                // Only a destination that needs it gets angle brackets.
                format!("[{s}](<{url}>)")
            } else {
                format!("[{s}]({url})")
            }
        }
        None => s,
    }
}

/// A one-line field (a title, a quote) as one line: line breaks (also CR, NEL and the
/// Unicode line and paragraph separators) become spaces, so a title from a received
/// change cannot start a forged heading or diff line in a rendering.
pub fn single_line(text: &str) -> std::borrow::Cow<'_, str> {
    let is_break = |c: char| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}');
    if text.contains(is_break) {
        std::borrow::Cow::Owned(text.replace(is_break, " "))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// Escapes what Markdown would otherwise read as syntax (for titles and other plain
/// text put into Markdown output).
pub fn escape_markdown(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut line_start = true;
    while i < chars.len() {
        let c = chars[i];
        if line_start {
            // "1. " or "1) " at a line start would begin a numbered list.
            let digits = chars[i..].iter().take_while(|c| c.is_ascii_digit()).count();
            if digits > 0 && matches!(chars.get(i + digits), Some('.') | Some(')')) {
                out.extend(&chars[i..i + digits]);
                out.push('\\');
                out.push(chars[i + digits]);
                i += digits + 1;
                line_start = false;
                continue;
            }
            if matches!(c, '#' | '-' | '+' | '=' | '|' | '>') {
                out.push('\\');
                out.push(c);
                i += 1;
                line_start = false;
                continue;
            }
        }
        if matches!(
            c,
            '\\' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '&' | '!' | '~'
        ) {
            out.push('\\');
        }
        out.push(c);
        line_start = c == '\n';
        i += 1;
    }
    out
}

/// Writes blocks as HTML (escaped; links only to http, https and mailto).
pub fn to_html(blocks: &[Block]) -> String {
    let mut out = String::new();
    let mut list: Option<BlockKind> = None;
    for b in blocks.iter().filter(|b| !b.runs.is_empty()) {
        let is_item = matches!(b.kind, BlockKind::Bullet | BlockKind::Numbered);
        if list.is_some() && list != Some(b.kind) {
            out.push_str(if list == Some(BlockKind::Bullet) {
                "</ul>\n"
            } else {
                "</ol>\n"
            });
            list = None;
        }
        if is_item && list.is_none() {
            out.push_str(if b.kind == BlockKind::Bullet {
                "<ul>\n"
            } else {
                "<ol>\n"
            });
            list = Some(b.kind);
        }
        let inline: String = b.runs.iter().map(run_html).collect();
        match b.kind {
            BlockKind::Paragraph => out.push_str(&format!("<p>{inline}</p>\n")),
            BlockKind::Heading { level } => {
                // Section titles are h2; headings inside a section start at h3.
                let h = (level + 2).min(6);
                out.push_str(&format!("<h{h}>{inline}</h{h}>\n"));
            }
            BlockKind::Bullet | BlockKind::Numbered => {
                out.push_str(&format!("<li>{inline}</li>\n"))
            }
        }
    }
    match list {
        Some(BlockKind::Bullet) => out.push_str("</ul>\n"),
        Some(_) => out.push_str("</ol>\n"),
        None => {}
    }
    out
}

fn run_html(r: &Run) -> String {
    let mut s = escape_html(&r.text).replace('\n', "<br>\n");
    if r.em {
        s = format!("<em>{s}</em>");
    }
    if r.strong {
        s = format!("<strong>{s}</strong>");
    }
    if let Some(url) = r.link.as_deref().filter(|u| safe_url(u)) {
        s = format!("<a href=\"{}\">{s}</a>", escape_html(url));
    }
    s
}

/// Whether a link target may appear in what a plan is rendered as: the Markdown of
/// `doc show`, the section text of the JSON view, and the Markdown and HTML exports.
/// Only `http:`, `https:` and `mailto:` targets; `javascript:`, `data:`, `vbscript:`,
/// `file:` and every other scheme, and relative targets, are dropped (the link's
/// text stays). The one rule for every rendering.
pub fn safe_url(url: &str) -> bool {
    let lower = url.trim().to_ascii_lowercase();
    ["https://", "http://", "mailto:"]
        .iter()
        .any(|p| lower.starts_with(p))
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(md: &str) -> Vec<Block> {
        let blocks = parse_markdown(md);
        let again = parse_markdown(&to_markdown(&blocks));
        assert_eq!(again, blocks, "markdown was:\n{}", to_markdown(&blocks));
        blocks
    }

    #[test]
    fn links_round_trip_as_written() {
        for md in [
            "Zie [de monitor](https://example.org/m?a=1&b=2).",
            "Zie <https://example.org/x>.",
            "Zie [wiki](<https://nl.wikipedia.org/wiki/Jeugd_(zorg)>).",
            "Mail [ons](mailto:jeugd@utrecht.nl).",
        ] {
            assert_eq!(to_markdown(&parse_markdown(md)), md);
        }
    }

    #[test]
    fn markdown_subset_parses_into_blocks_and_marks() {
        let b = roundtrip(
            "# Doelen\n\nMinder **thuiszitters** en _minder_ uitval, zie [de monitor](https://example.org/monitor).\n\n- eerste\n- tweede\n\n1. een\n2. twee\n",
        );
        let kinds: Vec<_> = b.iter().map(|b| b.kind).collect();
        assert_eq!(
            kinds,
            [
                BlockKind::Heading { level: 1 },
                BlockKind::Paragraph,
                BlockKind::Bullet,
                BlockKind::Bullet,
                BlockKind::Numbered,
                BlockKind::Numbered
            ]
        );
        let p = &b[1].runs;
        assert_eq!(p[0].text, "Minder ");
        assert!(p[1].strong && p[1].text == "thuiszitters");
        assert!(p[3].em && p[3].text == "minder");
        assert_eq!(p[5].link.as_deref(), Some("https://example.org/monitor"));
        assert_eq!(b[3].plain(), "tweede");
    }

    #[test]
    fn syntax_characters_in_text_survive_a_round_trip() {
        for text in [
            "1. geen lijst",
            "- geen lijst",
            "# geen kop",
            "a*b*c and _x_ [y](z) \\ <b> &amp; `code`",
            "regel een\n- regel twee",
        ] {
            let blocks = vec![Block {
                kind: BlockKind::Paragraph,
                runs: vec![Run {
                    text: text.into(),
                    ..Run::default()
                }],
            }];
            let md = to_markdown(&blocks);
            assert_eq!(parse_markdown(&md), blocks, "{text:?} became {md:?}");
        }
    }

    #[test]
    fn marked_runs_next_to_each_other_survive_a_round_trip() {
        let blocks = vec![Block {
            kind: BlockKind::Bullet,
            runs: vec![
                Run {
                    text: "vet".into(),
                    strong: true,
                    ..Run::default()
                },
                Run {
                    text: " en ".into(),
                    ..Run::default()
                },
                Run {
                    text: "schuin vet".into(),
                    strong: true,
                    em: true,
                    ..Run::default()
                },
                Run {
                    text: " link".into(),
                    link: Some("https://example.org/a b".into()),
                    ..Run::default()
                },
            ],
        }];
        assert_eq!(parse_markdown(&to_markdown(&blocks)), blocks);
    }

    #[test]
    fn html_is_escaped_and_unsafe_links_are_dropped() {
        let blocks = vec![Block {
            kind: BlockKind::Paragraph,
            runs: vec![
                Run {
                    text: "<script>alert(1)</script>".into(),
                    ..Run::default()
                },
                Run {
                    text: "klik".into(),
                    link: Some("javascript:alert(1)".into()),
                    ..Run::default()
                },
            ],
        }];
        let html = to_html(&blocks);
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("javascript:"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
    }

    #[test]
    fn a_line_break_in_a_title_cannot_forge_a_heading() {
        assert_eq!(
            single_line("Plan\n## Besluit: alles goedgekeurd\r\u{2028}x"),
            "Plan ## Besluit: alles goedgekeurd  x"
        );
        assert!(matches!(single_line("Plan"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn javascript_and_data_links_are_dropped_from_markdown_and_html_alike() {
        let link = |text: &str, url: &str| Run {
            text: text.into(),
            link: Some(url.into()),
            ..Run::default()
        };
        let blocks = parse_markdown(
            "[a](javascript:alert(1)) [b](JavaScript:alert(1)) [c](data:text/html;base64,PHNjcmlwdD4=) \
             [d](vbscript:msgbox) [e](file:///etc/passwd) [f](%6Aavascript:x) <javascript:alert(2)> \
             [ok](https://example.org/monitor) [mail](mailto:vsv@example.org) [g](http://example.org)",
        );
        // The editor keeps what was written; the renderings decide.
        assert!(
            blocks[0]
                .runs
                .iter()
                .any(|r| r.link.as_deref() == Some("javascript:alert(1)"))
        );
        let md = to_markdown(&blocks);
        let html = to_html(&blocks);
        for bad in ["alert(1)", "base64", "vbscript", "file:", "%6A"] {
            assert!(!md.contains(bad), "{bad} in {md}");
            assert!(!html.contains(bad), "{bad} in {html}");
        }
        // Three links are left; the autolink's target stays as its text only.
        assert_eq!(md.matches("](").count(), 3, "{md}");
        assert_eq!(html.matches("<a href").count(), 3, "{html}");
        assert!(md.contains(" javascript:alert(2) "), "{md}");
        for good in [
            "https://example.org/monitor",
            "mailto:vsv@example.org",
            "http://example.org",
        ] {
            assert!(md.contains(good), "{good} missing in {md}");
            assert!(html.contains(good), "{good} missing in {html}");
        }
        // The texts stay.
        for text in ["a", "b", "c", "d", "e", "f", "ok", "mail"] {
            assert!(md.contains(text));
        }
        assert_eq!(
            to_markdown(&[Block {
                kind: BlockKind::Paragraph,
                runs: vec![link("klik hier", "javascript:alert(1)")],
            }]),
            "klik hier"
        );
        for (url, ok) in [
            (" https://example.org", true),
            ("HTTPS://EXAMPLE.ORG", true),
            ("mailto:a@example.org", true),
            ("data:text/html,x", false),
            ("vbscript:x", false),
            ("//example.org", false),
            ("plan.html", false),
            ("", false),
        ] {
            assert_eq!(safe_url(url), ok, "{url}");
        }
    }
}

// regiosync: the section editor's toolbar and live preview, and "comment on the
// selected passage". The forms work without this file (a plain textarea, "Opslaan"
// and "Voorbeeld" submit to the server; the comment form takes a typed quote); this
// only adds buttons that insert Markdown, a preview the server renders, and a
// button that fills the comment form from a selection in a section's text.
(function () {
  "use strict";
  var form = document.querySelector("form.editor");
  if (!form) { return; }
  var area = form.querySelector("textarea[name=tekst]");
  var bar = form.querySelector(".toolbar");
  var preview = form.querySelector(".preview");
  if (!area || !bar) { return; }
  bar.hidden = false;

  function wrap(before, after, placeholder) {
    var s = area.selectionStart, e = area.selectionEnd, v = area.value;
    var inner = v.slice(s, e) || placeholder;
    area.setRangeText(before + inner + after, s, e, "end");
    area.setSelectionRange(s + before.length, s + before.length + inner.length);
  }
  // Puts `prefix` before every line of the selection (or the current line).
  function prefixLines(prefix) {
    var v = area.value, s = area.selectionStart, e = area.selectionEnd;
    var start = v.lastIndexOf("\n", s - 1) + 1;
    var end = v.indexOf("\n", e);
    if (end < 0) { end = v.length; }
    var n = 0;
    var lines = v.slice(start, end).split("\n").map(function (l) {
      var bare = l.replace(/^(#{1,6} |- |\d+\. )/, "");
      n += 1;
      return (typeof prefix === "function" ? prefix(n) : prefix) + bare;
    });
    area.setRangeText(lines.join("\n"), start, end, "select");
  }
  var actions = {
    bold: function () { wrap("**", "**", "vet"); },
    italic: function () { wrap("_", "_", "cursief"); },
    h2: function () { prefixLines("## "); },
    h3: function () { prefixLines("### "); },
    ul: function () { prefixLines("- "); },
    ol: function () { prefixLines(function (n) { return n + ". "; }); },
    link: function () {
      var url = window.prompt("Adres van de link (https://…)", "https://");
      if (url) { wrap("[", "](" + url + ")", "tekst"); }
    }
  };
  function run(name) {
    area.focus();
    actions[name]();
    area.dispatchEvent(new Event("input"));
  }
  bar.addEventListener("click", function (ev) {
    var b = ev.target.closest("button[data-md]");
    if (b && actions[b.dataset.md]) { run(b.dataset.md); }
  });
  area.addEventListener("keydown", function (ev) {
    if (!(ev.ctrlKey || ev.metaKey)) { return; }
    if (ev.key === "b") { ev.preventDefault(); run("bold"); }
    if (ev.key === "i") { ev.preventDefault(); run("italic"); }
  });

  // Live preview, rendered and escaped by the server.
  var url = form.dataset.preview;
  var token = form.querySelector("input[name=csrf]");
  var timer = null;
  function refresh() {
    if (!url || !token || !preview) { return; }
    var body = new URLSearchParams();
    body.set("tekst", area.value);
    fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": token.value, "Content-Type": "application/x-www-form-urlencoded" },
      body: body.toString()
    }).then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) { if (html !== null) { preview.innerHTML = html; } })
      .catch(function () { /* the preview button still works */ });
  }
  area.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 300);
  });
  refresh();
  area.focus();
})();

// Comment on a passage: selecting words within one paragraph of a section's text
// (with the mouse or the keyboard) shows a button under that section; it fills the
// "Opmerking bij een passage" form with the section and the selected words, opens
// it and puts the focus in the comment field. The server still checks that the
// quote occurs exactly once in the section.
(function () {
  "use strict";
  if (!document.getElementById("opmerking-form") || !window.getSelection) { return; }
  var button = document.createElement("button");
  button.type = "button";
  button.className = "secondary quote-button";
  button.textContent = "Opmerking bij de geselecteerde tekst";
  button.hidden = true;
  var chosen = null;
  var blocks = "p, li, h1, h2, h3, h4, h5, h6, blockquote, pre, td, th";

  function selected() {
    var sel = window.getSelection();
    if (!sel || sel.isCollapsed || sel.rangeCount === 0) { return null; }
    var node = sel.getRangeAt(0).commonAncestorContainer;
    var el = node.nodeType === 1 ? node : node.parentElement;
    var box = el && el.closest ? el.closest("section[id] > .text") : null;
    var block = el && el.closest ? el.closest(blocks) : null;
    if (!box || !block || !box.contains(block)) { return null; }
    var quote = sel.toString().replace(/\s+/g, " ").trim();
    if (!quote) { return null; }
    return { section: box.parentElement.id, quote: quote, box: box };
  }

  var timer;
  document.addEventListener("selectionchange", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      var s = selected();
      if (!s) {
        // Pressing the button moves the selection; keep the last one until then.
        if (document.activeElement !== button) { button.hidden = true; chosen = null; }
        return;
      }
      chosen = s;
      s.box.after(button);
      button.hidden = false;
    }, 150);
  });

  button.addEventListener("click", function () {
    // The live script may have swapped the page's content: look the form up now.
    var form = document.getElementById("opmerking-form");
    if (!chosen || !form) { return; }
    var select = form.querySelector("select[name=sectie]");
    var quote = form.querySelector("input[name=citaat]");
    var text = form.querySelector("textarea[name=tekst]");
    if (select) { select.value = chosen.section; }
    if (quote) { quote.value = chosen.quote; }
    var details = form.closest("details");
    if (details) { details.open = true; }
    button.hidden = true;
    if (text) { text.focus(); text.scrollIntoView({ block: "center" }); }
  });
})();

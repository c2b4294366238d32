//! A real browser edits a plan: a `beleid` user signs in, makes a word bold with the
//! editor's toolbar, saves and sees it; two browsers edit different paragraphs of one
//! section from the same version and both texts survive; approving, then a later
//! edit shows "1 wijziging sinds". Same setup as browser.rs (Debian's chromium and
//! chromedriver; never skipped). `REGIOSYNC_SCREENSHOTS=DIR` saves the editor.

#![allow(clippy::print_stderr)]

mod common;

use std::time::Duration;

use common::browser::{
    browser, browser_binaries, screenshots, sign_in, start_chromedriver, start_server,
};
use common::fixture;
use fantoccini::{Client, Locator};
use tokio_util::sync::CancellationToken;

/// Opens the editor of section `sid` and replaces its text with `text`.
async fn edit(
    c: &Client,
    base: &str,
    plan: &str,
    sid: &str,
    text: &str,
) -> Result<(), fantoccini::error::CmdError> {
    c.goto(&format!("{base}/plannen/{plan}/secties/{sid}/bewerken"))
        .await?;
    let area = c.wait().for_element(Locator::Id("tekst")).await?;
    area.clear().await?;
    area.send_keys(text).await?;
    Ok(())
}

async fn save(c: &Client) -> Result<(), fantoccini::error::CmdError> {
    c.find(Locator::Css(
        "form.editor .buttons button[type=submit]:not([name])",
    ))
    .await?
    .click()
    .await?;
    c.wait()
        .for_element(Locator::Css("p.notice[role=status]"))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beleid_user_edits_with_the_toolbar_two_browsers_merge_and_approvals_count() {
    let (chromium, chromedriver) = browser_binaries();
    let f = fixture();
    let plan = f.plan.to_string();
    let (intro, visie) = {
        let p = f.node.lock().await.plan(&f.plan).unwrap();
        (
            p.titled("Inleiding").unwrap().id.clone(),
            p.titled("Visie en ambities").unwrap().id.clone(),
        )
    };
    let cancel = CancellationToken::new();
    let (addr, _, task) = start_server(f.app.clone(), f.dir.path(), cancel.clone()).await;
    let (mut driver, port) = start_chromedriver(&chromedriver).await;
    let (pa, pb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = browser(&chromium, port, pa.path(), 1400).await;
    let b = browser(&chromium, port, pb.path(), 1400).await;
    let shots = screenshots();
    let base = format!("https://127.0.0.1:{}", addr.port());

    let result: Result<(), fantoccini::error::CmdError> = async {
        sign_in(&a, &base, "p.beleid").await?;
        sign_in(&b, &base, "p.beleid").await?;
        // The toolbar: type a sentence, select a word, press Vet.
        edit(
            &a,
            &base,
            &plan,
            &intro,
            "Samen met het onderwijs werken we samen aan de overdracht.",
        )
        .await?;
        a.wait()
            .for_element(Locator::Css(".toolbar:not([hidden]) button[data-md=bold]"))
            .await?;
        // Select the second "samen" as a person would, then press Vet.
        a.execute(
            "const t = document.getElementById('tekst'); const i = t.value.lastIndexOf('samen'); t.focus(); t.setSelectionRange(i, i + 5);",
            vec![],
        )
        .await?;
        a.find(Locator::Css("button[data-md=bold]"))
            .await?
            .click()
            .await?;
        let value = a
            .find(Locator::Id("tekst"))
            .await?
            .prop("value")
            .await?
            .unwrap_or_default();
        assert_eq!(
            value,
            "Samen met het onderwijs werken we **samen** aan de overdracht."
        );
        // The live preview, rendered by the server.
        a.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(".preview strong"))
            .await?;
        if let Some(d) = &shots {
            std::fs::write(d.join("web-plan-bewerken.png"), a.screenshot().await?).unwrap();
        }
        save(&a).await?;
        let bold = a
            .find(Locator::Css(&format!("section#{intro} .text strong")))
            .await?
            .text()
            .await?;
        assert_eq!(bold, "samen");

        // Comment on a passage: select words across the bold one, press the button
        // that appears, and the form holds the section and the quote.
        a.execute(
            "const p = document.getElementById(arguments[0]).querySelector('.text p'); \
             const t = p.firstChild; const strong = p.querySelector('strong'); \
             const r = document.createRange(); \
             r.setStart(t, t.textContent.indexOf('werken')); \
             r.setEnd(strong.nextSibling, 4); \
             const s = window.getSelection(); s.removeAllRanges(); s.addRange(r); \
             document.dispatchEvent(new Event('selectionchange'));",
            vec![serde_json::json!(intro)],
        )
        .await?;
        a.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("button.quote-button:not([hidden])"))
            .await?
            .click()
            .await?;
        let form = a.find(Locator::Id("opmerking-form")).await?;
        let quote = form
            .find(Locator::Id("opmerking-citaat"))
            .await?
            .prop("value")
            .await?
            .unwrap_or_default();
        assert_eq!(quote, "werken we samen aan");
        let section = form
            .find(Locator::Id("opmerking-sectie"))
            .await?
            .prop("value")
            .await?
            .unwrap_or_default();
        assert_eq!(section, intro);
        form.find(Locator::Id("opmerking-tekst"))
            .await?
            .send_keys("Wie is hier aanspreekpunt?")
            .await?;
        form.find(Locator::Css("button[type=submit]"))
            .await?
            .click()
            .await?;
        common::browser::wait_for_path(&a, |p| p.contains("bericht=opmerking")).await?;
        let quoted = a
            .wait()
            .for_element(Locator::Css("ul.comments li blockquote"))
            .await?
            .text()
            .await?;
        assert_eq!(quoted, "werken we samen aan");

        // Two browsers open the same section at the same version; each rewrites a
        // different paragraph; both save.
        c_open(&a, &base, &plan, &visie).await?;
        c_open(&b, &base, &plan, &visie).await?;
        let va = a
            .find(Locator::Id("tekst"))
            .await?
            .prop("value")
            .await?
            .unwrap_or_default();
        let vb = b
            .find(Locator::Id("tekst"))
            .await?
            .prop("value")
            .await?
            .unwrap_or_default();
        assert_eq!(va, vb);
        let ta = va.replace("De partners spreken af:", "De partners (A) spreken af:");
        let tb = vb.replace(
            "één contactpersoon per school",
            "één vaste contactpersoon per school (B)",
        );
        for (c, t) in [(&a, &ta), (&b, &tb)] {
            let area = c.find(Locator::Id("tekst")).await?;
            area.clear().await?;
            area.send_keys(t).await?;
        }
        save(&a).await?;
        save(&b).await?;
        let notice = b.find(Locator::Css("p.notice")).await?.text().await?;
        assert!(notice.contains("samengevoegd"), "{notice}");
        for c in [&a, &b] {
            c.goto(&format!("{base}/plannen/{plan}")).await?;
            let text = c
                .find(Locator::Css(&format!("section#{visie} .text")))
                .await?
                .text()
                .await?;
            assert!(text.contains("De partners (A) spreken af:"), "{text}");
            assert!(
                text.contains("één vaste contactpersoon per school (B)"),
                "{text}"
            );
        }

        // Approve, then a later edit: "1 wijziging sinds" and the diff.
        a.find(Locator::Css("form.approve button[type=submit]"))
            .await?
            .click()
            .await?;
        a.wait().for_element(Locator::Css("p.notice")).await?;
        let since = a
            .find(Locator::Css("#goedkeuring td.since"))
            .await?
            .text()
            .await?;
        assert!(since.contains("deze versie"), "{since}");
        edit(&b, &base, &plan, &intro, "Een latere wijziging.").await?;
        save(&b).await?;
        a.goto(&format!("{base}/plannen/{plan}")).await?;
        let since = a
            .find(Locator::Css("#goedkeuring td.since"))
            .await?
            .text()
            .await?;
        assert!(since.contains("1 wijziging sinds"), "{since}");
        a.find(Locator::Css("#goedkeuring td.since a"))
            .await?
            .click()
            .await?;
        // The plan page has a `main h1` too: wait for the diff page's address first.
        common::browser::wait_for_path(&a, |p| p.contains("/sinds/")).await?;
        let h1 = a
            .wait()
            .for_element(Locator::Css("main h1"))
            .await?
            .text()
            .await?;
        assert!(h1.starts_with("Wijzigingen sinds de goedkeuring"), "{h1}");
        let body = a.find(Locator::Css("main")).await?.text().await?;
        assert!(body.contains("Een latere wijziging."), "{body}");
        assert!(a.get_alert_text().await.is_err());
        Ok(())
    }
    .await;
    if result.is_err()
        && let Ok(page) = a.source().await
    {
        eprintln!("the page when the test failed:\n{page}");
    }
    let _ = a.close().await;
    let _ = b.close().await;
    let _ = driver.kill().await;
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    result.unwrap();
}

async fn c_open(
    c: &Client,
    base: &str,
    plan: &str,
    sid: &str,
) -> Result<(), fantoccini::error::CmdError> {
    c.goto(&format!("{base}/plannen/{plan}/secties/{sid}/bewerken"))
        .await?;
    c.wait().for_element(Locator::Id("tekst")).await?;
    Ok(())
}

// regiosync: the section editor's toolbar and live preview. The form works without
// this file (a plain textarea, "Opslaan" and "Voorbeeld" submit to the server); this
// only adds buttons that insert Markdown and a preview the server renders.
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

// Live plan page (docs/WEB.md, "Live"): listens to /plannen/{id}/events and, when
// the plan changed, fetches this page again and swaps in the content of
// #plan-live, keeping what the person is working on: elements marked
// data-live-keep (an open editor) and a form that holds the focus stay as they
// are. The notice of who changed what is read out politely (aria-live).
// Without this script the page works as before: a reload shows the changes.
(function () {
  'use strict';
  var box = document.getElementById('plan-live');
  if (!box || !window.EventSource || !window.fetch || !window.DOMParser) {
    return;
  }
  var status = document.createElement('div');
  status.id = 'live-status';
  status.setAttribute('role', 'status');
  status.setAttribute('aria-live', 'polite');
  box.parentNode.insertBefore(status, box);

  function say(text) {
    var p = document.createElement('p');
    p.className = 'notice';
    p.textContent = text;
    status.replaceChildren(p);
  }

  // A selector that finds the counterpart of a kept element in the new page.
  function keyOf(el) {
    if (el.id) {
      return '#' + CSS.escape(el.id);
    }
    var k = el.getAttribute('data-live-keep');
    return k ? '[data-live-keep="' + CSS.escape(k) + '"]' : null;
  }

  function keptElements() {
    var list = Array.prototype.slice.call(box.querySelectorAll('[data-live-keep]'));
    var active = document.activeElement;
    var form = active && active.closest ? active.closest('form') : null;
    if (form && box.contains(form) && list.indexOf(form) < 0) {
      list.push(form);
    }
    return list;
  }

  var busy = false;
  var again = false;

  function swap(fresh) {
    var kept = keptElements();
    var pairs = [];
    for (var i = 0; i < kept.length; i++) {
      var key = keyOf(kept[i]);
      var spot = key ? fresh.querySelector(key) : null;
      if (!spot) {
        // What the person is editing is gone from the new page (or cannot be
        // matched): keep the page as it is rather than lose their input.
        return false;
      }
      pairs.push([spot, kept[i]]);
    }
    var active = document.activeElement;
    var sel = null;
    if (active && typeof active.selectionStart === 'number') {
      sel = [active.selectionStart, active.selectionEnd];
    }
    for (var j = 0; j < pairs.length; j++) {
      pairs[j][0].replaceWith(pairs[j][1]);
    }
    var nodes = Array.prototype.slice.call(fresh.childNodes).map(function (n) {
      return document.adoptNode(n);
    });
    box.replaceChildren.apply(box, nodes);
    if (active && active !== document.body && box.contains(active)) {
      active.focus();
      if (sel) {
        try { active.setSelectionRange(sel[0], sel[1]); } catch (e) { /* not a text field */ }
      }
    }
    return true;
  }

  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    fetch(location.pathname + location.search, {
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { 'Accept': 'text/html' }
    }).then(function (r) {
      if (!r.ok || r.redirected) {
        throw new Error('status ' + r.status);
      }
      return r.text();
    }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, 'text/html');
      var fresh = doc.getElementById('plan-live');
      var version = fresh ? fresh.getAttribute('data-version') : null;
      if (!fresh || !swap(fresh)) {
        say((status.textContent ? status.textContent + ' ' : '') +
          'Herlaad de pagina om alle wijzigingen te zien (sla eerst uw eigen werk op).');
      } else if (version !== null) {
        box.setAttribute('data-version', version);
      }
      box.setAttribute('data-live-version', String(Number(box.getAttribute('data-live-version') || 0) + 1));
    }).catch(function () {
      say('Deze pagina kon niet worden bijgewerkt. Herlaad de pagina.');
    }).then(function () {
      busy = false;
      if (again) {
        again = false;
        refresh();
      }
    });
  }

  var opened = false;
  // The stream is told the version this page shows: a change stored between the
  // page's rendering and the stream's start is announced at once instead of lost.
  var events = new EventSource(location.pathname.replace(/\/$/, '') + '/events?versie=' +
    encodeURIComponent(box.getAttribute('data-version') || ''));
  events.addEventListener('open', function () {
    box.setAttribute('data-live-state', 'open');
    // After a lost connection, changes may have been missed.
    if (opened) {
      refresh();
    }
    opened = true;
  });
  events.addEventListener('change', function (e) {
    var data = {};
    try { data = JSON.parse(e.data); } catch (err) { data = {}; }
    var notices = Array.isArray(data.notices) ? data.notices : [];
    if (notices.length) {
      say(notices.join('. ') + '.');
    }
    refresh();
  });
  events.addEventListener('end', function () {
    events.close();
    box.setAttribute('data-live-state', 'closed');
    say('Deze pagina wordt niet meer bijgewerkt: u bent uitgelogd of uw sessie is verlopen. Herlaad de pagina.');
  });
  events.addEventListener('error', function () {
    if (events.readyState === EventSource.CLOSED) {
      box.setAttribute('data-live-state', 'closed');
    }
  });
}());

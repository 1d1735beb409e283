// The dashboard's one script: times in the viewer's zone, a confirmation before cancelling, a live
// campaign page (server-sent events), and live template previews. Every page works without it.
(function () {
  "use strict";

  function localTimes(root) {
    var format = new Intl.DateTimeFormat(undefined, { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", timeZoneName: "short" });
    root.querySelectorAll("time[data-local]").forEach(function (el) {
      var at = new Date(el.getAttribute("datetime"));
      if (!isNaN(at)) { el.textContent = format.format(at); el.title = el.getAttribute("datetime"); }
    });
  }

  function confirmations(root) {
    root.querySelectorAll("form[data-confirm]").forEach(function (form) {
      if (form.dataset.bound) { return; }
      form.dataset.bound = "1";
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); return; }
        var confirmed = document.createElement("input");
        confirmed.type = "hidden"; confirmed.name = "confirmed"; confirmed.value = "yes";
        form.appendChild(confirmed);
      });
    });
  }

  function live() {
    var page = document.querySelector("[data-live-url]");
    if (!page || !window.EventSource) { return; }
    var source = new EventSource(page.dataset.liveUrl);
    source.addEventListener("update", function (event) {
      var parts = JSON.parse(event.data);
      Object.keys(parts).forEach(function (name) {
        document.querySelectorAll('[data-live="' + name + '"]').forEach(function (el) {
          if (el.innerHTML === parts[name]) { return; }
          var focused = el.contains(document.activeElement);
          el.innerHTML = parts[name];
          localTimes(el); confirmations(el);
          if (focused) { var first = el.querySelector("button, a"); if (first) { first.focus(); } }
        });
      });
      page.dataset.updates = String(Number(page.dataset.updates || 0) + 1);
    });
    source.addEventListener("end", function () { source.close(); page.dataset.ended = "1"; });
  }

  function previews() {
    var form = document.querySelector("form[data-preview-url]");
    if (!form) { return; }
    var target = document.getElementById("preview");
    var timer = null;
    function refresh() {
      var body = new URLSearchParams(new FormData(form));
      body.delete("csrf_token");
      fetch(form.dataset.previewUrl, {
        method: "POST", body: body, credentials: "same-origin",
        headers: { "X-CSRF-Token": form.querySelector("[name=csrf_token]").value },
      }).then(function (response) { return response.text(); })
        .then(function (html) { target.innerHTML = html; })
        .catch(function () { target.textContent = "The preview is not available right now."; });
    }
    form.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(refresh, 250); });
    form.addEventListener("change", function () { clearTimeout(timer); timer = setTimeout(refresh, 50); });
  }

  // Settings for one channel (a campaign's voice calls) show only while that channel is chosen,
  // or while they hold an error; without the script they always show.
  function channelFields() {
    var channel = document.querySelector("form select[name=channel]");
    if (!channel) { return; }
    function show() {
      document.querySelectorAll("fieldset[data-channel]").forEach(function (set) {
        set.hidden = set.dataset.channel !== channel.value && !set.querySelector(".invalid");
      });
    }
    channel.addEventListener("change", show);
    show();
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document); confirmations(document); live(); previews(); channelFields();
    var summary = document.querySelector("[data-focus]");
    if (summary) { summary.focus(); }
  });
})();

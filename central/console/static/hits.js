// Live hits: new hits from the server-sent event stream are added at the top of the table.
// Without JavaScript the page still lists the newest hits and has a Refresh button.
(function () {
  "use strict";
  var body = document.getElementById("hits-live");
  var status = document.getElementById("live-status");
  if (!body || !window.EventSource || body.dataset.paused) { return; }
  var url = body.dataset.stream + "?after=" + encodeURIComponent(body.dataset.lastId || "0");
  var source = new EventSource(url);

  function cell(row, text, cls) {
    var td = document.createElement("td");
    if (cls) { td.className = cls; }
    if (text instanceof Node) { td.appendChild(text); } else { td.textContent = text; }
    row.appendChild(td);
    return td;
  }
  function badge(text, cls) {
    var span = document.createElement("span");
    span.className = "badge " + cls;
    span.textContent = text;
    return span;
  }
  function when(t) { return String(t).replace("T", " ").slice(0, 19); }
  function matchBadge(h) {
    return h.possible ? badge("possible · " + h.match_kind, "badge-possible") : badge("exact", "badge-exact");
  }
  // A later, better read of the same pass moved a hit shown here to that read: show it.
  source.addEventListener("hit-upgraded", function (event) {
    var h = JSON.parse(event.data);
    var row = body.querySelector('tr[data-hit-id="' + String(Number(h.hit_id)) + '"]');
    if (!row) { return; }
    var read = row.querySelector("td.read"), match = row.querySelector("td.match");
    var captured = row.querySelector("td.captured"), thumb = row.querySelector("img.thumb");
    if (read) { read.textContent = h.read_plate || h.matched_text; }
    if (captured) { captured.textContent = when(h.captured_at); }
    if (match) { match.textContent = ""; match.appendChild(matchBadge(h)); }
    if (thumb) { thumb.src = "/hits/" + h.hit_id + "/thumb?read=" + encodeURIComponent(h.read_id); }
    row.classList.add("new-hit");
    status.textContent = "Hit " + h.hit_id + " upgraded: a better read of the same pass (" + h.match_kind + " match).";
  });
  source.addEventListener("open", function () {
    status.textContent = "Live: new hits appear at the top as they are raised.";
  });
  source.addEventListener("error", function () {
    status.textContent = source.readyState === EventSource.CLOSED
      ? "Live updates stopped (your session may have ended): reload the page."
      : "Live updates interrupted; reconnecting (or press Refresh).";
  });
  source.addEventListener("hit", function (event) {
    var h = JSON.parse(event.data);
    var row = document.createElement("tr");
    row.className = "status-" + h.status + " new-hit";
    row.dataset.hitId = String(h.hit_id);
    var link = document.createElement("a");
    link.href = "/hits/" + h.hit_id;
    link.textContent = "Open hit " + h.hit_id;
    cell(row, link);
    var thumb = document.createElement("img");
    thumb.className = "thumb";
    thumb.src = "/hits/" + h.hit_id + "/thumb";
    thumb.loading = "lazy";
    thumb.decoding = "async";
    thumb.alt = "plate crop of hit " + h.hit_id;
    cell(row, thumb);
    cell(row, when(h.captured_at), "captured");
    cell(row, h.read_plate || h.matched_text, "plate read");
    cell(row, (h.entry && h.entry.plate) || "", "plate");
    var list = document.createElement("span");
    list.textContent = h.list_name + " ";
    var cat = document.createElement("span");
    cat.className = "note";
    cat.textContent = "(" + h.category + ")";
    list.appendChild(cat);
    cell(row, list);
    cell(row, matchBadge(h), "match");
    cell(row, h.device_id + " / " + h.camera_id);
    cell(row, badge(h.status, "badge-" + h.status));
    body.insertBefore(row, body.firstChild);
    var none = document.getElementById("no-hits");
    if (none) { none.remove(); }
    status.textContent = "New hit " + h.hit_id + " on " + h.list_name + " (" + h.category + "), unverified.";
  });
})();

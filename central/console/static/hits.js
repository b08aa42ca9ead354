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
    cell(row, String(h.captured_at).replace("T", " ").slice(0, 19));
    cell(row, h.read_plate || h.matched_text, "plate");
    cell(row, (h.entry && h.entry.plate) || "", "plate");
    var list = document.createElement("span");
    list.textContent = h.list_name + " ";
    var cat = document.createElement("span");
    cat.className = "note";
    cat.textContent = "(" + h.category + ")";
    list.appendChild(cat);
    cell(row, list);
    cell(row, h.possible ? badge("possible · " + h.match_kind, "badge-possible") : badge("exact", "badge-exact"));
    cell(row, h.device_id + " / " + h.camera_id);
    cell(row, badge(h.status, "badge-" + h.status));
    body.insertBefore(row, body.firstChild);
    var none = document.getElementById("no-hits");
    if (none) { none.remove(); }
    status.textContent = "New hit " + h.hit_id + " on " + h.list_name + " (" + h.category + "), unverified.";
  });
})();

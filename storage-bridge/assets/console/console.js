/* Switchboard agent console: served by the storage bridge beside its API (same origin),
 * talking to the gateway over WebSocket (docs/protocol.md) and to the API for what is not
 * a frame (login, canned replies, transfer, close). No dependencies.
 *
 * A conversation is read a page at a time: its newest page by `history`, then `resume` from
 * the newest seq of that page to go live, and older pages on demand. Supervisors watch any
 * conversation of their site the same way and whisper to its agent. */
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var session = {
    token: sessionStorage.getItem("sb.token"),
    agent: sessionStorage.getItem("sb.agent"),
    // Served over https, the console must reach the gateway's TLS listener (8443 in the
    // README's example); a browser refuses ws:// from an https page.
    gateway: sessionStorage.getItem("sb.gateway") ||
      (location.protocol === "https:" ? "wss://" + location.hostname + ":8443" : "ws://" + location.hostname + ":8080"),
  };
  // conv -> {visitor, lastSeq, oldest, more, seen:{}, items:[] (in seq order), unread, closed,
  // context, labels, reason, watching, starting}
  var convs = {};
  var current = null, ws = null, backoff = 500, canned = [], away = false;
  var PAGE = 30;

  function api(method, path, body) {
    return fetch(path, {
      method: method,
      headers: Object.assign({ "content-type": "application/json" },
        session.token ? { authorization: "Bearer " + session.token } : {}),
      body: body ? JSON.stringify(body) : undefined,
    }).then(function (r) {
      return r.text().then(function (t) {
        var data = t ? JSON.parse(t) : null;
        if (!r.ok) throw new Error((data && data.message) || r.statusText);
        return data;
      });
    });
  }

  // ---- log in ----
  $("gateway").value = session.gateway;
  $("login-form").addEventListener("submit", function (e) {
    e.preventDefault();
    $("login-error").textContent = "";
    api("POST", "/api/v1/auth/login", { agent: $("agent").value, password: $("password").value })
      .then(function (r) {
        session.token = r.token; session.agent = r.agent; session.gateway = $("gateway").value;
        sessionStorage.setItem("sb.token", r.token);
        sessionStorage.setItem("sb.agent", r.agent);
        sessionStorage.setItem("sb.gateway", session.gateway);
        start();
      })
      .catch(function (err) { $("login-error").textContent = err.message; });
  });
  $("logout").addEventListener("click", function () {
    sessionStorage.clear();
    location.reload();
  });

  function start() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("me").textContent = session.agent;
    refresh();
    setInterval(refresh, 5000);
    api("GET", "/api/v1/canned-replies").then(function (r) {
      canned = r.replies;
      canned.forEach(function (c) {
        var o = document.createElement("option");
        o.value = c.id;
        o.textContent = c.shortcut;
        $("canned").appendChild(o);
      });
    }).catch(function () {});
    connect();
  }

  // ---- the gateway ----
  function connect() {
    ws = new WebSocket(session.gateway + "/ws/agent?client=web&token=" + encodeURIComponent(session.token));
    ws.onopen = function () {
      backoff = 500;
      $("link").textContent = "online";
      // Watched conversations are not assigned again: attach them anew.
      Object.keys(convs).forEach(function (id) { if (convs[id].watching) attach(id); });
    };
    ws.onmessage = function (e) { handle(JSON.parse(e.data)); };
    ws.onclose = function (e) {
      $("link").textContent = "reconnecting";
      if (e.code === 4002) { $("link").textContent = "account disabled"; return; }
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }
  function conv(id) {
    if (!convs[id]) convs[id] = { lastSeq: 0, seen: {}, items: [], unread: 0, context: {}, labels: {} };
    return convs[id];
  }
  function put(c, it) {
    var i = c.items.length;
    while (i > 0 && c.items[i - 1].seq > it.seq) i--;
    c.items.splice(i, 0, it);
  }
  function addMsg(c, m) {
    if (c.seen[m.seq]) return false;
    c.seen[m.seq] = true;
    c.lastSeq = Math.max(c.lastSeq, m.seq);
    c.oldest = c.oldest ? Math.min(c.oldest, m.seq) : m.seq;
    put(c, { seq: m.seq, from: m.from, body: m.body });
    return true;
  }
  function addNote(c, text, extra) {
    put(c, Object.assign({ seq: c.lastSeq + 0.5, note: text }, extra || {}));
  }
  // Live in `id`: from where this console left off, or its newest page first.
  function attach(id) {
    var c = conv(id);
    if (c.lastSeq) { ws.send(JSON.stringify({ type: "resume", conv: id, last_seq: c.lastSeq })); return; }
    c.starting = true;
    ws.send(JSON.stringify({ type: "history", conv: id, limit: PAGE }));
  }
  function handle(f) {
    var c;
    switch (f.type) {
      case "assigned":
        var fresh = !convs[f.conv] || convs[f.conv].watching;
        c = conv(f.conv);
        c.visitor = f.visitor;
        c.closed = false;
        c.watching = false;
        if (f.context) c.context = f.context;
        if (f.labels) c.labels = f.labels;
        if (f.reason) c.reason = f.reason;
        attach(f.conv);
        if (!current) select(f.conv);
        if (fresh) notify("New conversation from " + f.visitor);
        break;
      case "history":
        c = conv(f.conv);
        (f.messages || []).forEach(function (m) { addMsg(c, m); });
        c.more = !f.complete;
        if (c.starting) {
          c.starting = false;
          ws.send(JSON.stringify({ type: "resume", conv: f.conv, last_seq: c.lastSeq }));
        }
        if (f.conv === current) show(true);
        break;
      case "msg":
        c = conv(f.conv);
        if (!addMsg(c, f)) break;
        if (f.conv === current) {
          show();
          if (!c.watching) ws.send(JSON.stringify({ type: "read", conv: f.conv, seq: f.seq }));
        }
        else if (f.from !== session.agent && !c.starting) c.unread++;
        break;
      case "ack":
        c = conv(f.conv);
        addMsg(c, { seq: f.seq, from: session.agent, body: (c.sending || {})[f.cid] || "" });
        if (f.conv === current) show();
        break;
      case "whisper":
        c = conv(f.conv);
        addNote(c, "Whisper from " + f.from + ": " + f.body, { cls: "whisper" });
        if (f.conv === current) show();
        break;
      case "presence":
        away = f.status === "away";
        $("presence").textContent = away ? "Go online" : "Go away";
        $("presence").setAttribute("aria-pressed", String(away));
        $("me").textContent = session.agent + (away ? " (away)" : "");
        return;
      case "typing":
        if (f.conv === current && f.from !== session.agent) {
          $("typing").textContent = f.from + " is typing";
          clearTimeout(handle.t);
          handle.t = setTimeout(function () { $("typing").textContent = ""; }, 3000);
        }
        return;
      case "draft":
        c = conv(f.conv);
        addNote(c, "Suggested by " + f.by + ": " + f.body, { draft: f.body });
        if (f.conv === current) show();
        break;
      case "labels":
        c = conv(f.conv);
        c.labels = f.labels || {};
        if (f.conv === current) show();
        break;
      case "closed":
        c = conv(f.conv);
        c.closed = true;
        addNote(c, "Closed" + (f.by ? " by " + f.by : ""));
        if (f.conv === current) show();
        break;
      case "transferred":
        if (f.from === session.agent) {
          delete convs[f.conv];
          if (current === f.conv) current = null;
          show();
        }
        break;
      case "error":
        $("link").textContent = f.message;
        return;
    }
    list();
  }

  // ---- the screen ----
  function list() {
    var ul = $("convs");
    ul.textContent = "";
    Object.keys(convs).forEach(function (id) {
      var c = convs[id];
      var li = document.createElement("li");
      var b = document.createElement("button");
      b.type = "button";
      b.setAttribute("data-conv", id);
      if (id === current) b.setAttribute("aria-current", "true");
      b.textContent = label(c, id) + (c.watching ? " (watching)" : "") + (c.closed ? " (closed)" : "");
      if (c.unread) {
        var u = document.createElement("span");
        u.className = "unread";
        u.textContent = String(c.unread);
        u.setAttribute("aria-label", c.unread + " unread");
        b.appendChild(u);
      }
      b.addEventListener("click", function () { select(id); });
      li.appendChild(b);
      ul.appendChild(li);
    });
  }
  // The name the visitor typed (offline form) with its id, or the id alone.
  function label(c, id) {
    var v = c.visitor || id;
    return c.context && c.context.name ? c.context.name + " · " + v : v;
  }
  function select(id) {
    current = id;
    convs[id].unread = 0;
    var c = convs[id];
    if (!c.watching && c.lastSeq && ws && ws.readyState === 1) {
      ws.send(JSON.stringify({ type: "read", conv: id, seq: c.lastSeq }));
    }
    list();
    show();
    loadNotes();
    $("text").focus();
  }
  // `keepTop`: older messages came in above; the view stays where it was.
  function show(keepTop) {
    var log = $("log");
    var fromBottom = log.scrollHeight - log.scrollTop;
    log.textContent = "";
    var c = current && convs[current];
    ["text", "send"].forEach(function (k) { $(k).disabled = !c || !!c.closed; });
    ["transfer", "close"].forEach(function (k) { $(k).disabled = !c || !!c.closed || !!c.watching; });
    ["note", "tags", "save-note"].forEach(function (k) { $(k).disabled = !c; });
    $("earlier").hidden = !(c && c.more);
    $("text").placeholder = c && c.watching ? "Whisper to the agent (the visitor never sees it)"
      : "Reply, or / for canned replies";
    $("text").setAttribute("aria-label", c && c.watching ? "Whisper" : "Reply");
    if (!c) { $("chat-title").textContent = "Pick a conversation"; $("context").textContent = ""; return; }
    $("chat-title").textContent = label(c, current) + (c.watching ? " — watching " + (c.agent || "") : "") +
      (c.reason ? " — " + c.reason : "");
    var ctx = [];
    Object.keys(c.context || {}).forEach(function (k) { ctx.push(k + ": " + c.context[k]); });
    Object.keys(c.labels || {}).forEach(function (k) { ctx.push(k + "=" + c.labels[k]); });
    $("context").textContent = ctx.join(" · ");
    c.items.forEach(function (it) {
      var d = document.createElement("div");
      if (it.note) {
        d.className = "n" + (it.cls ? " " + it.cls : "");
        d.textContent = it.note;
        if (it.draft) d.addEventListener("click", function () { $("text").value = it.draft; });
      } else {
        d.className = "m" + (it.from === session.agent ? " mine" : "");
        var w = document.createElement("div");
        w.className = "who";
        w.textContent = it.from === session.agent ? "You" : it.from;
        var body = document.createElement("div");
        body.className = "body";
        body.textContent = it.body;
        d.appendChild(w);
        d.appendChild(body);
      }
      log.appendChild(d);
    });
    log.scrollTop = keepTop ? log.scrollHeight - fromBottom : log.scrollHeight;
  }
  // A new conversation: a short tone, and a desktop notification when the tab is hidden.
  function notify(text) {
    beep();
    if (document.hidden && window.Notification && Notification.permission === "granted") {
      new Notification("Switchboard", { body: text });
    }
  }
  function beep() {
    try {
      var ctx = beep.ctx || (beep.ctx = new (window.AudioContext || window.webkitAudioContext)());
      var o = ctx.createOscillator(), g = ctx.createGain();
      o.frequency.value = 880;
      g.gain.value = 0.08;
      o.connect(g);
      g.connect(ctx.destination);
      o.start();
      o.stop(ctx.currentTime + 0.15);
    } catch (e) {}
  }
  $("earlier").addEventListener("click", function () {
    var c = current && convs[current];
    if (c && c.oldest) ws.send(JSON.stringify({ type: "history", conv: current, before: c.oldest, limit: PAGE }));
  });
  $("presence").addEventListener("click", function () {
    if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "presence", status: away ? "online" : "away" }));
  });

  // ---- the queue, the team (supervisors), notes and tags ----
  function ago(ms) {
    var s = Math.max(0, Math.round((Date.now() - ms) / 1000));
    return s < 60 ? s + " s" : Math.round(s / 60) + " min";
  }
  function fill(ul, rows) {
    ul.textContent = "";
    rows.forEach(function (r) {
      var li = document.createElement("li");
      li.textContent = r.text;
      if (r.cls) li.className = r.cls;
      ul.appendChild(li);
    });
  }
  function refresh() {
    api("GET", "/api/v1/conversations?status=waiting&limit=50").then(function (r) {
      fill($("queue"), r.conversations.map(function (c) {
        return { text: c.visitor + " · waiting " + ago(c.opened_at) };
      }));
    }).catch(function () {});
    // Supervisors see their agents, online or not, with how many conversations each has.
    Promise.all([api("GET", "/api/v1/agents"), api("GET", "/api/v1/conversations?status=open&limit=500")])
      .then(function (both) {
        var load = {};
        both[1].conversations.forEach(function (c) { if (c.agent) load[c.agent] = (load[c.agent] || 0) + 1; });
        $("team-panel").hidden = false;
        fill($("agents"), both[0].agents.map(function (a) {
          return { text: a.id + (a.online ? " · online" : " · offline") + " · " + (load[a.id] || 0) + " open",
                   cls: a.online ? "on" : "" };
        }));
        // Any open conversation, to watch live.
        var live = $("live");
        live.textContent = "";
        both[1].conversations.forEach(function (oc) {
          if (convs[oc.id] && !convs[oc.id].watching) return;
          var li = document.createElement("li");
          li.textContent = oc.visitor + (oc.agent ? " · " + oc.agent : " · waiting");
          var b = document.createElement("button");
          b.type = "button";
          b.textContent = "Watch";
          b.setAttribute("aria-label", "Watch " + oc.visitor);
          b.addEventListener("click", function () { watch(oc); });
          li.appendChild(b);
          live.appendChild(li);
        });
      })
      .catch(function () {});
  }
  function watch(oc) {
    var c = conv(oc.id);
    c.watching = true;
    c.visitor = oc.visitor;
    c.agent = oc.agent;
    if (oc.context) c.context = oc.context;
    attach(oc.id);
    select(oc.id);
  }
  function loadNotes() {
    if (!current) return;
    var id = current;
    api("GET", "/api/v1/conversations/" + id).then(function (r) {
      if (current !== id) return;
      $("tags").value = (r.tags || []).join(", ");
      fill($("notes"), (r.notes || []).map(function (n) { return { text: n.author + ": " + n.body }; }));
    }).catch(function () {});
  }
  $("note-form").addEventListener("submit", function (e) {
    e.preventDefault();
    if (!current) return;
    var id = current, body = $("note").value.trim();
    var tags = $("tags").value.split(",").map(function (x) { return x.trim(); }).filter(Boolean);
    var writes = [api("PUT", "/api/v1/conversations/" + id + "/tags", { tags: tags })];
    if (body) writes.push(api("POST", "/api/v1/conversations/" + id + "/notes", { body: body }));
    Promise.all(writes).then(function () { $("note").value = ""; loadNotes(); })
      .catch(function (err) { $("link").textContent = err.message; });
  });

  // ---- replying ----
  function reply(body) {
    var c = convs[current];
    var cid = "k" + Date.now().toString(36) + Math.random().toString(36).slice(2, 7);
    c.sending = c.sending || {};
    c.sending[cid] = body;
    ws.send(JSON.stringify({ type: "msg", conv: current, cid: cid, body: body }));
  }
  function render(id) {
    return api("POST", "/api/v1/canned-replies/" + id + "/render", { visitor: convs[current].visitor })
      .then(function (r) { $("text").value = r.body; $("text").focus(); });
  }
  $("send-form").addEventListener("submit", function (e) {
    e.preventDefault();
    var body = $("text").value.trim();
    if (!body || !current) return;
    if (convs[current].watching) {
      $("text").value = "";
      ws.send(JSON.stringify({ type: "whisper", conv: current, body: body }));
      return;
    }
    var shortcut = canned.filter(function (c) { return c.shortcut === body; })[0];
    if (shortcut) { render(shortcut.id); return; }
    $("text").value = "";
    reply(body);
  });
  $("text").addEventListener("input", function () {
    var now = Date.now();
    if (current && !convs[current].watching && ws && ws.readyState === 1 && now - (reply.typed || 0) > 2000) {
      reply.typed = now;
      ws.send(JSON.stringify({ type: "typing", conv: current }));
    }
  });
  $("canned").addEventListener("change", function () {
    if (this.value && current) render(this.value);
    this.value = "";
  });
  $("transfer").addEventListener("click", function () {
    var to = $("transfer-to").value.trim();
    var body = { note: $("transfer-note").value.trim() || undefined };
    if (to.indexOf("team:") === 0) body.team = to.slice(5); else if (to) body.to = to;
    api("POST", "/api/v1/conversations/" + current + "/transfer", body)
      .then(function () { $("link").textContent = "transferred"; })
      .catch(function (err) { $("link").textContent = err.message; });
  });
  $("close").addEventListener("click", function () {
    api("POST", "/api/v1/conversations/" + current + "/close")
      .catch(function (err) { $("link").textContent = err.message; });
  });

  if (window.Notification && Notification.permission === "default") {
    try { Notification.requestPermission(); } catch (e) {}
  }
  if (session.token) start();
})();

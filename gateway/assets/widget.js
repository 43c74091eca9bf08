/* Switchboard visitor widget: one <script> tag, no dependencies.
 *
 *   <script src="http://127.0.0.1:8080/widget.js" data-site="shop" data-color="#2456a6"
 *           data-lang="en" data-position="right" defer></script>
 *
 * It keeps the visitor's token (localStorage), reconnects with backoff and resumes from the
 * last seq it saw, resends unacked messages with the same cid, and shows each message's
 * state (sending, stored). Protocol: docs/protocol.md.
 */
(function () {
  "use strict";
  var me = document.currentScript;
  if (!me || window.__switchboardWidget) return;
  window.__switchboardWidget = true;
  var cfg = {
    site: me.getAttribute("data-site") || "",
    color: me.getAttribute("data-color") || "#2456a6",
    lang: (me.getAttribute("data-lang") || navigator.language || "en").slice(0, 2),
    position: me.getAttribute("data-position") === "left" ? "left" : "right",
  };
  var T = {
    en: {
      open: "Chat with us", close: "Close chat", title: "Chat", placeholder: "Write a message",
      send: "Send", sending: "sending", stored: "sent", seen: "read", queued: "You are number {n} in line",
      joined: "{a} joined the conversation", bot: "Assistant", system: "Notice",
      typing: "{a} is typing", closed: "The conversation has ended. How did we do?",
      thanks: "Thank you!", offline: "Nobody is available right now", reconnecting: "Reconnecting",
      unread: "{n} unread messages", you: "You",
      leave: "Leave your name and e-mail: we will answer you there.", name: "Name",
      email: "E-mail", submit: "Send", left: "Thank you. We will write to {e}.",
    },
    zh: {
      open: "在线咨询", close: "关闭", title: "在线客服", placeholder: "输入消息", send: "发送",
      sending: "发送中", stored: "已送达", seen: "已读", queued: "您前面还有 {n} 位", joined: "{a} 已加入会话",
      bot: "智能助手", system: "通知", typing: "{a} 正在输入", closed: "会话已结束，请为本次服务评分",
      thanks: "谢谢！", offline: "暂无客服在线", reconnecting: "正在重新连接", unread: "{n} 条未读消息",
      you: "我",
      leave: "请留下您的姓名和邮箱，我们会尽快回复您。", name: "姓名", email: "邮箱",
      submit: "提交", left: "谢谢！我们会回复到 {e}。",
    },
  };
  var t = T[cfg.lang] || T.en;
  function say(key, vars) {
    return String(t[key]).replace(/\{(\w+)\}/g, function (_, k) { return vars && k in vars ? vars[k] : ""; });
  }
  var base = new URL(me.src, location.href);
  var wsBase = (base.protocol === "https:" ? "wss://" : "ws://") + base.host + "/ws/visitor";
  var key = "switchboard." + (cfg.site || "default") + ".";
  var store = {
    get: function (k) { try { return localStorage.getItem(key + k); } catch (e) { return null; } },
    set: function (k, v) { try { localStorage.setItem(key + k, v); } catch (e) {} },
    del: function (k) { try { localStorage.removeItem(key + k); } catch (e) {} },
  };

  // ---- the screen ----
  var css = [
    ".sbw{position:fixed;bottom:20px;" + cfg.position + ":20px;z-index:2147483000;font:14px/1.4 system-ui,sans-serif}",
    ".sbw-launch{width:56px;height:56px;border-radius:50%;border:0;background:" + cfg.color + ";color:#fff;font-size:24px;cursor:pointer;position:relative}",
    ".sbw-badge{position:absolute;top:-4px;right:-4px;min-width:20px;height:20px;border-radius:10px;background:#d92d20;color:#fff;font-size:12px;line-height:20px}",
    ".sbw-panel{position:absolute;bottom:70px;" + cfg.position + ":0;width:340px;max-width:calc(100vw - 40px);height:460px;max-height:calc(100vh - 110px);background:#fff;border-radius:12px;box-shadow:0 8px 30px rgba(0,0,0,.25);display:flex;flex-direction:column;overflow:hidden}",
    ".sbw-head{background:" + cfg.color + ";color:#fff;padding:10px 14px;display:flex;justify-content:space-between;align-items:center}",
    ".sbw-head button{background:none;border:0;color:#fff;font-size:20px;cursor:pointer}",
    ".sbw-status{font-size:12px;color:#555;padding:4px 14px;min-height:18px}",
    ".sbw-log{flex:1;overflow-y:auto;padding:8px 12px;background:#f6f7f9}",
    ".sbw-msg{margin:6px 0;max-width:85%;padding:6px 10px;border-radius:10px;background:#fff;border:1px solid #e3e5e8;word-wrap:break-word}",
    ".sbw-mine{margin-left:auto;background:" + cfg.color + ";color:#fff;border:0}",
    ".sbw-who{font-size:11px;opacity:.75}",
    ".sbw-state{font-size:11px;opacity:.75;text-align:right}",
    ".sbw-note{text-align:center;font-size:12px;color:#666;margin:6px 0}",
    ".sbw-form{display:flex;border-top:1px solid #e3e5e8}",
    ".sbw-form input{flex:1;border:0;padding:12px;font:inherit}",
    ".sbw-form button{border:0;background:" + cfg.color + ";color:#fff;padding:0 16px;font:inherit;cursor:pointer}",
    ".sbw-offline{background:#fff;border:1px solid #e3e5e8;border-radius:10px;padding:8px;margin:6px 0}",
    ".sbw-offline input{display:block;width:100%;box-sizing:border-box;margin:4px 0;padding:6px;border:1px solid #ccd;border-radius:6px;font:inherit}",
    ".sbw-offline button{border:0;border-radius:6px;background:" + cfg.color + ";color:#fff;padding:6px 14px;font:inherit;cursor:pointer}",
    ".sbw-stars button{border:0;background:none;font-size:22px;cursor:pointer;color:#f5a623}",
    "@media (max-width:480px){.sbw-panel{position:fixed;left:0;right:0;bottom:0;top:0;width:auto;max-width:none;height:auto;max-height:none;border-radius:0}.sbw-open .sbw-launch{display:none}}",
  ].join("");
  var style = document.createElement("style");
  style.textContent = css;
  document.head.appendChild(style);
  var root = el("div", { class: "sbw" });
  var launch = el("button", { class: "sbw-launch", "aria-label": t.open, "aria-expanded": "false", "data-sb": "launch" });
  // A speech bubble drawn inline: no icon font, no emoji font needed.
  launch.innerHTML = '<svg width="26" height="26" viewBox="0 0 24 24" aria-hidden="true" fill="#fff"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"/></svg>';
  var badge = el("span", { class: "sbw-badge", hidden: "", "data-sb": "badge" });
  launch.appendChild(badge);
  var panel = el("div", { class: "sbw-panel", role: "dialog", "aria-label": t.title, hidden: "" });
  var head = el("div", { class: "sbw-head" }, el("strong", {}, t.title));
  var closeBtn = el("button", { "aria-label": t.close }, "×");
  head.appendChild(closeBtn);
  var status = el("div", { class: "sbw-status", role: "status", "aria-live": "polite", "data-sb": "status" });
  var log = el("div", { class: "sbw-log", role: "log", "aria-live": "polite", "data-sb": "log" });
  var form = el("form", { class: "sbw-form" });
  var input = el("input", { "aria-label": t.placeholder, placeholder: t.placeholder, maxlength: "4000", "data-sb": "input" });
  var sendBtn = el("button", { type: "submit", "data-sb": "send" }, t.send);
  form.appendChild(input);
  form.appendChild(sendBtn);
  panel.appendChild(head);
  panel.appendChild(status);
  panel.appendChild(log);
  panel.appendChild(form);
  root.appendChild(panel);
  root.appendChild(launch);
  (document.body || document.documentElement).appendChild(root);

  function el(tag, attrs, child) {
    var e = document.createElement(tag);
    for (var k in attrs) e.setAttribute(k, attrs[k]);
    if (typeof child === "string") e.textContent = child;
    else if (child) e.appendChild(child);
    return e;
  }
  var unread = 0;
  function isOpen() { return !panel.hidden; }
  function setOpen(open) {
    panel.hidden = !open;
    root.classList.toggle("sbw-open", open);
    launch.setAttribute("aria-expanded", String(open));
    if (open) { unread = 0; showBadge(); input.focus(); markRead(); }
  }
  function showBadge() {
    badge.hidden = unread === 0;
    badge.textContent = String(unread);
    launch.setAttribute("aria-label", unread ? t.open + " (" + say("unread", { n: unread }) + ")" : t.open);
  }
  launch.addEventListener("click", function () { setOpen(!isOpen()); });
  closeBtn.addEventListener("click", function () { setOpen(false); launch.focus(); });
  document.addEventListener("keydown", function (e) { if (e.key === "Escape" && isOpen()) setOpen(false); });
  function note(text, attr) {
    var n = el("div", { class: "sbw-note" }, text);
    if (attr) n.setAttribute("data-sb", attr);
    log.appendChild(n);
    log.scrollTop = log.scrollHeight;
    return n;
  }

  // ---- the conversation ----
  var ws = null, myId = null, conv = store.get("conv"), lastSeq = +(store.get("seq") || 0);
  var pending = {}; // cid -> {body, node}
  var shown = {}; // seq -> true
  var backoff = 500, typingTimer = null, lastTypingSent = 0, welcomed = false, refused = 0;

  function who(from) {
    if (from === myId) return t.you;
    if (from === "bot:switchboard") return t.bot;
    if (from === "system:switchboard") return t.system;
    return from;
  }
  function addMessage(m) {
    if (shown[m.seq]) return;
    shown[m.seq] = true;
    var mine = m.from === myId;
    var node = pending[m.cid] && mine ? pending[m.cid].node : null;
    if (!node) {
      node = el("div", { class: "sbw-msg" + (mine ? " sbw-mine" : ""), "data-sb": "msg", "data-from": m.from, "data-seq": String(m.seq) });
      node.appendChild(el("div", { class: "sbw-who" }, who(m.from)));
      node.appendChild(el("div", { class: "sbw-body" }, m.body));
      if (mine) node.appendChild(el("div", { class: "sbw-state", "data-sb": "state" }, t.stored));
      log.appendChild(node);
    }
    if (m.seq > lastSeq) { lastSeq = m.seq; store.set("seq", String(lastSeq)); }
    if (!mine) {
      if (!isOpen()) { unread++; showBadge(); } else markRead();
    }
    log.scrollTop = log.scrollHeight;
  }
  function markRead() {
    if (ws && ws.readyState === 1 && conv && lastSeq) ws.send(JSON.stringify({ type: "read", conv: conv, seq: lastSeq }));
  }
  function send(body) {
    var cid = "w" + Date.now().toString(36) + Math.random().toString(36).slice(2, 8);
    var node = el("div", { class: "sbw-msg sbw-mine", "data-sb": "msg", "data-cid": cid });
    node.appendChild(el("div", { class: "sbw-who" }, t.you));
    node.appendChild(el("div", { class: "sbw-body" }, body));
    node.appendChild(el("div", { class: "sbw-state", "data-sb": "state" }, t.sending));
    log.appendChild(node);
    log.scrollTop = log.scrollHeight;
    pending[cid] = { body: body, node: node };
    savePending();
    transmit(cid);
  }
  function transmit(cid) {
    if (!ws || ws.readyState !== 1) return; // resent on reconnect
    var f = { type: "msg", cid: cid, body: pending[cid].body };
    if (conv) f.conv = conv;
    ws.send(JSON.stringify(f));
  }
  function savePending() {
    var out = {};
    for (var c in pending) out[c] = pending[c].body;
    store.set("pending", JSON.stringify(out));
  }
  function restorePending() {
    var saved = {};
    try { saved = JSON.parse(store.get("pending") || "{}"); } catch (e) {}
    for (var c in saved) {
      var node = el("div", { class: "sbw-msg sbw-mine", "data-sb": "msg", "data-cid": c });
      node.appendChild(el("div", { class: "sbw-who" }, t.you));
      node.appendChild(el("div", { class: "sbw-body" }, saved[c]));
      node.appendChild(el("div", { class: "sbw-state", "data-sb": "state" }, t.sending));
      log.appendChild(node);
      pending[c] = { body: saved[c], node: node };
    }
  }
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var body = input.value.trim();
    if (!body) return;
    input.value = "";
    send(body);
  });
  input.addEventListener("input", function () {
    var now = Date.now();
    if (ws && ws.readyState === 1 && conv && now - lastTypingSent > 2000) {
      lastTypingSent = now;
      ws.send(JSON.stringify({ type: "typing", conv: conv }));
    }
  });
  // Where the visitor is, and the name and e-mail it left (a later context replaces the
  // stored one, so every one carries them).
  function sendContext() {
    var c = { type: "context", page: location.href, referrer: document.referrer,
      user_agent: navigator.userAgent, lang: navigator.language || "" };
    var contact = {};
    try { contact = JSON.parse(store.get("contact") || "{}"); } catch (e) {}
    if (contact.name) c.name = contact.name;
    if (contact.email) c.email = contact.email;
    for (var k in c) c[k] = String(c[k]).slice(0, 512);
    if (ws && ws.readyState === 1) ws.send(JSON.stringify(c));
  }
  // Nobody is there: the site's text, and a form for a name and an e-mail to answer to.
  function offlineForm(text) {
    if (log.querySelector("[data-sb=offline]")) return;
    var box = el("form", { class: "sbw-offline", "data-sb": "offline", "aria-label": text });
    box.appendChild(el("p", {}, text));
    if (store.get("contact")) { log.appendChild(box); return; }
    box.appendChild(el("p", {}, t.leave));
    var name = el("input", { "aria-label": t.name, placeholder: t.name, maxlength: "200", autocomplete: "name", "data-sb": "offline-name" });
    var email = el("input", { type: "email", required: "", "aria-label": t.email, placeholder: t.email, maxlength: "200", autocomplete: "email", "data-sb": "offline-email" });
    box.appendChild(name);
    box.appendChild(email);
    box.appendChild(el("button", { type: "submit", "data-sb": "offline-send" }, t.submit));
    box.addEventListener("submit", function (e) {
      e.preventDefault();
      store.set("contact", JSON.stringify({ name: name.value.trim(), email: email.value.trim() }));
      sendContext();
      box.textContent = "";
      box.appendChild(el("p", { role: "status" }, say("left", { e: email.value.trim() })));
    });
    log.appendChild(box);
    log.scrollTop = log.scrollHeight;
  }
  function askRating(c) {
    var box = el("div", { class: "sbw-note sbw-stars", "data-sb": "rate" }, t.closed);
    var row = el("div", {});
    [1, 2, 3, 4, 5].forEach(function (n) {
      var b = el("button", { "aria-label": n + "/5", "data-score": String(n) }, "★");
      b.addEventListener("click", function () {
        if (ws && ws.readyState === 1) ws.send(JSON.stringify({ type: "rate", conv: c, score: n }));
        box.textContent = t.thanks;
      });
      row.appendChild(b);
    });
    box.appendChild(row);
    log.appendChild(box);
    log.scrollTop = log.scrollHeight;
  }

  function handle(f) {
    switch (f.type) {
      case "welcome":
        myId = f.id;
        welcomed = true;
        refused = 0;
        if (f.token) store.set("token", f.token);
        backoff = 500;
        status.textContent = "";
        if (f.greeting && !log.querySelector("[data-sb=greeting]")) note(f.greeting, "greeting");
        sendContext();
        // A new page shows the whole conversation; a reconnect, what it missed.
        var from = Object.keys(shown).length ? lastSeq : 0;
        if (conv) ws.send(JSON.stringify({ type: "resume", conv: conv, last_seq: from }));
        for (var c in pending) transmit(c);
        break;
      case "ack":
        if (!conv) { conv = f.conv; store.set("conv", conv); }
        var p = pending[f.cid];
        if (p) {
          p.node.querySelector("[data-sb=state]").textContent = t.stored;
          p.node.setAttribute("data-seq", String(f.seq));
          shown[f.seq] = true;
          delete pending[f.cid];
          savePending();
        }
        if (f.seq > lastSeq) { lastSeq = f.seq; store.set("seq", String(lastSeq)); }
        break;
      case "msg":
        if (!conv) { conv = f.conv; store.set("conv", conv); }
        addMessage(f);
        break;
      case "queued":
        status.textContent = f.offline ? "" : say("queued", { n: f.position });
        if (f.offline) offlineForm(f.offline_text || t.offline);
        break;
      case "agent_joined":
        status.textContent = "";
        note(say("joined", { a: f.agent }), "joined");
        break;
      case "bot_joined":
        status.textContent = "";
        break;
      case "transferred":
        break;
      case "read":
        // The agent has read up to seq: my messages up to there say so.
        if (f.from === myId) break;
        log.querySelectorAll(".sbw-mine[data-seq]").forEach(function (n) {
          if (+n.getAttribute("data-seq") <= f.seq) n.querySelector("[data-sb=state]").textContent = t.seen;
        });
        break;
      case "typing":
        if (f.from === myId) break;
        status.textContent = say("typing", { a: who(f.from) });
        clearTimeout(typingTimer);
        typingTimer = setTimeout(function () { status.textContent = ""; }, 3000);
        break;
      case "closed":
        status.textContent = "";
        askRating(f.conv);
        conv = null; lastSeq = 0; shown = {};
        store.del("conv"); store.del("seq");
        break;
      case "error":
        if (f.code === "not_in_conversation" || f.code === "no_conversation") {
          conv = null; lastSeq = 0; store.del("conv"); store.del("seq");
        }
        break;
    }
  }
  function connect() {
    var q = "?client=web";
    if (cfg.site) q += "&site=" + encodeURIComponent(cfg.site);
    var token = store.get("token");
    if (token) q += "&token=" + encodeURIComponent(token);
    ws = new WebSocket(wsBase + q);
    ws.onmessage = function (e) {
      var f;
      try { f = JSON.parse(e.data); } catch (x) { return; }
      handle(f);
    };
    ws.onclose = function (e) {
      // Refused again and again before any welcome: a token the gateway no longer takes
      // (expired, another site) or a stale conversation; start afresh.
      if (!welcomed && ++refused >= 3) { store.del("token"); store.del("conv"); store.del("seq"); conv = null; lastSeq = 0; }
      welcomed = false;
      status.textContent = t.reconnecting;
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 10000);
    };
  }
  restorePending();
  connect();
})();

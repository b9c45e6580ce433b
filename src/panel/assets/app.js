// vless-mtproxy web panel. Hand-written, no framework, nothing loaded from elsewhere.
// Data comes from /panel/api/* with the session cookie; every write sends the CSRF token in
// X-CSRF-Token. DOM is built with textContent only (names come from the config file), except
// the QR code's SVG, which the proxy renders itself.
"use strict";

const T = {
  en: {
    overview: "Overview", users: "Users", add_user: "Add user", logout: "Log out", login: "Log in",
    password: "Password", wrong_password: "Wrong password", uptime: "Uptime", active: "Active connections",
    total_conns: "Connections since start", now: "Traffic now", last_24h: "Last 24 h", last_30d: "Last 30 days",
    users_on: "Users enabled", users_off: "Users disabled", mode: "Mode", traffic_24h: "Traffic, last 24 hours",
    traffic_30d: "Traffic, last 30 days", from_clients: "from clients", to_clients: "to clients",
    failures: "Handshake failures by reason", reason: "Reason", count: "Count", dcs: "Telegram DCs", dc: "DC",
    ok: "OK", failed: "Failed", latency: "Avg connect", middle: "Middle-end (promoted channel)",
    middle_off: "Off (direct mode: no ad tag)", sessions: "Sessions", clusters: "Clusters", last_refresh: "Last refresh",
    upstreams: "Upstream servers", up: "up", down: "down", search: "Search by name", all: "All", enabled: "enabled",
    disabled: "disabled", name: "Name", kind: "Kind", state: "State", limits: "Limits", usage: "Quota use",
    last_seen: "Last seen", ips: "IPs", never: "never", none: "none", links: "Links and QR code",
    show_secret: "Show links and QR code", secret_note: "The link holds the secret: show it only to its owner.",
    print: "Print", enable: "Enable", disable: "Disable", regenerate: "Regenerate secret",
    grace: "Old secret keeps working for (e.g. 10m, 2h, 1d; empty: stops now)", save: "Save",
    max_connections: "Max connections", max_ips: "Max IP addresses", quota: "Data quota (e.g. 10GiB)",
    quota_reset: "Quota resets", monthly: "monthly", never_reset: "never", expires: "Expires (YYYY-MM-DD: through that day)",
    empty_clears: "An empty field means no limit.", domain: "Cover domain (fake-TLS)", create: "Create",
    created: "Created", rotated: "Rotated", traffic: "Traffic", saved: "Saved", added: "User added",
    confirm_disable: "Disable this user? Their connections close.", confirm_regen: "Give this user a new secret?",
    kind_dd: "dd (random padding)", kind_ee: "ee (fake-TLS, looks like HTTPS)", kind_classic: "classic (easy to detect)",
    session_over: "Session ended, log in again", refresh: "Refresh", total: "total", secret: "Secret",
    old_until: "Old secret works until", remove: "Remove user", removed: "User removed",
    confirm_remove: "This deletes the user from the configuration; their link stops working and their connections close. Type the user's name to confirm:",
  },
  ru: {
    overview: "Обзор", users: "Пользователи", add_user: "Добавить", logout: "Выйти", login: "Войти",
    password: "Пароль", wrong_password: "Неверный пароль", uptime: "Работает", active: "Соединений сейчас",
    total_conns: "Соединений с запуска", now: "Трафик сейчас", last_24h: "За 24 ч", last_30d: "За 30 дней",
    users_on: "Включено", users_off: "Отключено", mode: "Режим", traffic_24h: "Трафик за 24 часа",
    traffic_30d: "Трафик за 30 дней", from_clients: "от клиентов", to_clients: "клиентам",
    failures: "Неудачные рукопожатия по причинам", reason: "Причина", count: "Число", dcs: "Дата-центры Telegram",
    dc: "DC", ok: "Успешно", failed: "Ошибки", latency: "Среднее подключение", middle: "Middle-end (рекламный канал)",
    middle_off: "Выключен (прямой режим: нет ad tag)", sessions: "Сессии", clusters: "Кластеры",
    last_refresh: "Последнее обновление", upstreams: "Вышестоящие прокси", up: "работает", down: "недоступен",
    search: "Поиск по имени", all: "Все", enabled: "включён", disabled: "отключён", name: "Имя", kind: "Тип",
    state: "Состояние", limits: "Лимиты", usage: "Квота", last_seen: "Был в сети", ips: "IP", never: "никогда",
    none: "нет", links: "Ссылки и QR-код", show_secret: "Показать ссылки и QR-код",
    secret_note: "В ссылке секрет: показывайте её только владельцу.", print: "Печать", enable: "Включить",
    disable: "Отключить", regenerate: "Новый секрет",
    grace: "Старый секрет работает ещё (напр. 10m, 2h, 1d; пусто: сразу перестаёт)", save: "Сохранить",
    max_connections: "Макс. соединений", max_ips: "Макс. IP-адресов", quota: "Квота трафика (напр. 10GiB)",
    quota_reset: "Сброс квоты", monthly: "ежемесячно", never_reset: "никогда", expires: "Срок (ГГГГ-ММ-ДД: включая этот день)",
    empty_clears: "Пустое поле — без лимита.", domain: "Домен прикрытия (fake-TLS)", create: "Создать",
    created: "Создан", rotated: "Секрет сменён", traffic: "Трафик", saved: "Сохранено", added: "Пользователь добавлен",
    confirm_disable: "Отключить пользователя? Его соединения закроются.", confirm_regen: "Выдать пользователю новый секрет?",
    kind_dd: "dd (случайное дополнение)", kind_ee: "ee (fake-TLS, похоже на HTTPS)", kind_classic: "классический (легко обнаружить)",
    session_over: "Сессия закончилась, войдите снова", refresh: "Обновить", total: "всего", secret: "Секрет",
    old_until: "Старый секрет работает до", remove: "Удалить пользователя", removed: "Пользователь удалён",
    confirm_remove: "Пользователь будет удалён из конфигурации: его ссылка перестанет работать, соединения закроются. Введите имя пользователя для подтверждения:",
  },
};
let lang = localStorage.getItem("vmp-lang") || ((navigator.language || "").startsWith("ru") ? "ru" : "en");
const t = (k) => (T[lang] && T[lang][k]) || T.en[k] || k;
let csrf = null;
let refreshTimer = null;

function h(tag, attrs, ...kids) {
  const ns = ["svg", "rect", "text", "line", "g", "title"].includes(tag) ? "http://www.w3.org/2000/svg" : null;
  const el = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function bytes(n) {
  n = Number(n || 0);
  const u = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(n < 10 ? 2 : 1) : n) + " " + u[i];
}
function duration(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  return (d ? d + "d " : "") + (d || hh ? hh + "h " : "") + m + "m";
}
function when(unix) { return unix ? new Date(unix * 1000).toLocaleString(lang === "ru" ? "ru-RU" : "en-GB") : t("never"); }

function say(text, bad) {
  const m = document.getElementById("msg");
  m.textContent = text;
  m.className = bad ? "bad" : "";
  m.hidden = false;
  clearTimeout(say.timer);
  say.timer = setTimeout(() => { m.hidden = true; }, 5000);
}

class ApiError extends Error { constructor(status, msg) { super(msg); this.status = status; } }

async function api(method, path, body) {
  const opts = { method, credentials: "same-origin", headers: {} };
  if (method !== "GET") {
    opts.headers["Content-Type"] = "application/json";
    if (csrf) opts.headers["X-CSRF-Token"] = csrf;
    opts.body = JSON.stringify(body || {});
  }
  const r = await fetch("/panel/api/" + path, opts);
  const data = await r.json().catch(() => ({}));
  if (r.status === 401 && path !== "login") { csrf = null; showLogin(path === "session" ? "" : t("session_over")); throw new ApiError(401, t("session_over")); }
  if (!r.ok) throw new ApiError(r.status, data.error || r.statusText);
  return data;
}

function setMain(...kids) {
  const main = document.getElementById("main");
  main.replaceChildren(...kids);
  // A render counter: tests (and tools) can tell a fresh page from the one before an action.
  main.dataset.gen = String(Number(main.dataset.gen || 0) + 1);
}

function translateStatic() {
  document.documentElement.lang = lang;
  document.querySelectorAll("[data-t]").forEach((el) => { el.textContent = t(el.dataset.t); });
  document.getElementById("lang").textContent = lang === "ru" ? "EN" : "RU";
}

function showLogin(error) {
  clearInterval(refreshTimer);
  document.getElementById("nav").hidden = true;
  document.getElementById("logout").hidden = true;
  const pw = h("input", { id: "password", type: "password", autocomplete: "current-password", required: true });
  const err = h("div", { id: "login-error", class: "error" }, error || "");
  const form = h("form", { class: "panel login", id: "login-form" },
    h("h1", {}, t("login")), h("label", { for: "password" }, t("password")), pw,
    h("button", { id: "login-btn", type: "submit" }, t("login")), err);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api("POST", "login", { password: pw.value });
      csrf = r.csrf;
      pw.value = "";
      route();
    } catch (x) {
      err.textContent = x.status === 401 ? t("wrong_password") : x.message;
    }
  });
  setMain(form);
  pw.focus();
}

// A bar chart of [start, from, to] buckets: `count` slots of `step` seconds ending now,
// each slot the sum of the buckets in it. data-total carries the sum for tests and tools.
function chart(id, buckets, step, count, now) {
  const W = 1000, H = 140, pad = 18;
  const end = now - (now % step) + step, start = end - step * count;
  const slots = Array.from({ length: count }, () => [0, 0]);
  let total = 0;
  for (const [s, a, b] of buckets || []) {
    if (s < start || s >= end) continue;
    const i = Math.floor((s - start) / step);
    slots[i][0] += a; slots[i][1] += b; total += a + b;
  }
  const max = Math.max(1, ...slots.map(([a, b]) => a + b));
  const bw = (W - 2 * pad) / count;
  const svg = h("svg", { id, class: "chart", viewBox: `0 0 ${W} ${H + 16}`, "data-total": total, role: "img" });
  slots.forEach(([a, b], i) => {
    const x = pad + i * bw, ha = (a / max) * H, hb = (b / max) * H;
    const title = h("title", {}, `${when(start + i * step)}: ${bytes(a)} ↑ ${bytes(b)} ↓`);
    if (a + b > 0) {
      svg.append(h("g", {}, title,
        h("rect", { class: "in", x: x.toFixed(1), y: (H - ha - hb).toFixed(1), width: Math.max(bw - 1, 1).toFixed(1), height: ha.toFixed(1) }),
        h("rect", { class: "out", x: x.toFixed(1), y: (H - hb).toFixed(1), width: Math.max(bw - 1, 1).toFixed(1), height: hb.toFixed(1) })));
    }
  });
  svg.append(h("line", { x1: pad, x2: W - pad, y1: H, y2: H, stroke: "#c5ced8" }));
  svg.append(h("text", { x: pad, y: H + 13 }, when(start)));
  svg.append(h("text", { x: W - pad, y: H + 13, "text-anchor": "end" }, when(end)));
  const per = step >= 86400 ? "day" : step >= 3600 ? "h" : (step / 60) + " min";
  if (total) svg.append(h("text", { x: pad + 4, y: 12 }, `max ${bytes(max)} / ${per}`));
  return h("div", {}, svg,
    h("div", { class: "legend muted" }, h("span", {}, h("i", { class: "lg-in" }), t("from_clients")),
      h("span", {}, h("i", { class: "lg-out" }), t("to_clients")), h("span", { id: id + "-total" }, `${t("total")}: ${bytes(total)}`)));
}

function card(k, v, id) { return h("div", { class: "card" }, h("div", { class: "k" }, k), h("div", { class: "v", id }, v)); }

async function overview() {
  const d = await api("GET", "overview");
  const r = d.report;
  const mins = d.history.minutes || [];
  const lastFull = mins.filter(([s]) => s < d.now - (d.now % 60)).slice(-1)[0];
  const rate = lastFull && lastFull[0] >= d.now - (d.now % 60) - 60 ? (lastFull[1] + lastFull[2]) / 60 : 0;
  const fails = Object.entries(r.handshakes.failed).sort((a, b) => b[1] - a[1]);
  const dcs = r.upstream.dcs || [];
  const m = r.middle;
  setMain(
    h("h1", {}, t("overview")),
    h("div", { class: "cards" },
      card(t("uptime"), duration(r.uptime_seconds), "ov-uptime"),
      card(t("active"), r.connections.active, "ov-active"),
      card(t("total_conns"), r.connections.total, "ov-total"),
      card(t("now"), bytes(rate) + "/s", "ov-rate"),
      card(t("last_24h"), bytes(d.last_24h), "ov-24h"),
      card(t("last_30d"), bytes(d.last_30d), "ov-30d"),
      card(t("users_on"), r.config.users_enabled, "ov-on"),
      card(t("users_off"), r.config.users_disabled, "ov-off"),
      card(t("mode"), r.mode, "ov-mode")),
    h("h2", {}, t("traffic_24h")), chart("chart-24h", mins, 600, 144, d.now),
    h("h2", {}, t("traffic_30d")), chart("chart-30d", d.history.hours, 86400, 30, d.now),
    h("h2", {}, t("failures")),
    h("table", { id: "failures" }, h("tr", {}, h("th", {}, t("reason")), h("th", {}, t("count"))),
      fails.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", {}, v)))),
    h("h2", {}, t("dcs")),
    h("table", { id: "dcs" }, h("tr", {}, h("th", {}, t("dc")), h("th", {}, t("ok")), h("th", {}, t("failed")), h("th", {}, t("latency"))),
      dcs.map((x) => h("tr", {}, h("td", {}, x.dc), h("td", {}, x.connects_ok), h("td", {}, x.connect_failures),
        h("td", {}, x.latency.count ? (1000 * x.latency.sum_seconds / x.latency.count).toFixed(0) + " ms" : "–")))),
    h("h2", {}, t("middle")),
    m ? h("table", { id: "middle" },
      h("tr", {}, h("th", {}, t("sessions")), h("th", {}, t("clusters")), h("th", {}, t("last_refresh")), h("th", {}, t("failed"))),
      h("tr", {}, h("td", {}, `${m.sessions_active} / ${m.sessions_total}`), h("td", {}, m.clusters_v4 + m.clusters_v6),
        h("td", {}, when(m.last_refresh_ok_at)), h("td", {}, m.connect_failures)))
      : h("p", { class: "muted", id: "middle" }, t("middle_off")),
    (r.upstream.servers || []).length ? h("div", {}, h("h2", {}, t("upstreams")),
      h("table", {}, r.upstream.servers.map((s) => h("tr", {}, h("td", {}, s.name), h("td", {}, s.target),
        h("td", {}, h("span", { class: "tag " + (s.up ? "on" : "off") }, s.up ? t("up") : t("down"))), h("td", {}, s.connects_ok))))) : null,
  );
}

function usageBar(used, quota) {
  if (!quota) return h("span", { class: "muted" }, bytes(used));
  const p = Math.min(100, (100 * used) / quota);
  const fill = h("span");
  fill.style.width = p.toFixed(1) + "%";
  return h("span", {}, h("span", { class: "bar" + (p >= 100 ? " full" : p >= 80 ? " high" : "") }, fill), ` ${bytes(used)} / ${bytes(quota)}`);
}

function limitsText(l) {
  const parts = [];
  if (l.max_connections) parts.push(`conns ≤ ${l.max_connections}`);
  if (l.max_ips) parts.push(`IPs ≤ ${l.max_ips}`);
  if (l.quota_bytes) parts.push(`${bytes(l.quota_bytes)}${l.quota_reset === "monthly" ? "/mo" : ""}`);
  if (l.expires) parts.push(`→ ${l.expires.slice(0, 10)}`);
  return parts.length ? parts.join(", ") : "–";
}

async function users() {
  const d = await api("GET", "users");
  const q = h("input", { id: "search", type: "search", placeholder: t("search") });
  const kind = h("select", { id: "filter-kind" }, h("option", { value: "" }, t("kind") + ": " + t("all")), ["classic", "dd", "ee"].map((k) => h("option", { value: k }, k)));
  const state = h("select", { id: "filter-state" }, h("option", { value: "" }, t("state") + ": " + t("all")),
    h("option", { value: "on" }, t("enabled")), h("option", { value: "off" }, t("disabled")));
  const body = h("tbody");
  const draw = () => {
    const s = q.value.trim().toLowerCase();
    body.replaceChildren(...d.users
      .filter((u) => (!s || u.name.toLowerCase().includes(s)) && (!kind.value || u.kind === kind.value) &&
        (!state.value || (state.value === "on") === u.enabled))
      .map((u) => {
        const us = u.usage || {};
        const tr = h("tr", { class: "click", "data-user": u.name },
          h("td", {}, h("a", { href: "#/user/" + encodeURIComponent(u.name) }, u.name)),
          h("td", {}, u.kind + (u.domain ? ` (${u.domain})` : "")),
          h("td", {}, h("span", { class: "tag " + (u.enabled ? "on" : "off") }, u.enabled ? t("enabled") : t("disabled"))),
          h("td", {}, limitsText(u.limits)),
          h("td", {}, usageBar(us.quota_used_bytes || 0, u.limits.quota_bytes)),
          h("td", {}, bytes(u.last_24h)),
          h("td", {}, when(us.last_seen)),
          h("td", {}, us.unique_ips_active || 0));
        tr.addEventListener("click", (e) => { if (e.target.tagName !== "A") location.hash = "#/user/" + encodeURIComponent(u.name); });
        return tr;
      }));
  };
  [q, kind, state].forEach((el) => el.addEventListener("input", draw));
  draw();
  setMain(h("h1", {}, t("users")), h("div", { class: "row" }, q, kind, state),
    h("table", { id: "users-table" }, h("thead", {}, h("tr", {}, [t("name"), t("kind"), t("state"), t("limits"), t("usage"), t("last_24h"), t("last_seen"), t("ips")].map((x) => h("th", {}, x)))), body));
  q.focus();
}

function limitFields(prefix, l) {
  l = l || {};
  const f = (key, val) => [h("label", { for: prefix + key }, t(key)), h("input", { id: prefix + key, name: key, value: val ?? "" })];
  const reset = h("select", { id: prefix + "quota_reset", name: "quota_reset" },
    h("option", { value: "never", selected: l.quota_reset !== "monthly" }, t("never_reset")),
    h("option", { value: "monthly", selected: l.quota_reset === "monthly" }, t("monthly")));
  return [f("max_connections", l.max_connections), f("max_ips", l.max_ips), f("quota", l.quota_text || ""),
    h("label", { for: prefix + "quota_reset" }, t("quota_reset")), reset, f("expires", l.expires || "")].flat();
}

function formValues(form) {
  const o = {};
  for (const el of form.querySelectorAll("input[name], select[name]")) o[el.name] = el.value;
  return o;
}

async function user(name) {
  const u = await api("GET", "users/" + encodeURIComponent(name));
  const us = u.usage || {};
  const secretBox = h("div", { id: "secret-box" },
    h("p", { class: "muted" }, t("secret_note")),
    h("button", { id: "show-secret", type: "button", onclick: async () => {
      const s = await api("POST", "users/" + encodeURIComponent(name) + "/secret");
      const qr = h("div", { id: "qr" });
      qr.innerHTML = s.qr_svg; // rendered by the proxy from the link; no user input inside
      secretBox.replaceChildren(
        h("div", { class: "links" }, h("code", { id: "link-tg" }, s.links.tg), h("code", { id: "link-tme" }, s.links.tme)),
        qr, h("div", {}, h("button", { type: "button", class: "secondary", onclick: () => window.print() }, t("print"))));
    } }, t("show_secret")));
  const toggle = h("button", { id: "toggle-enabled", type: "button", class: u.enabled ? "danger" : "", onclick: async () => {
    if (u.enabled && !window.confirm(t("confirm_disable"))) return;
    await act("users/" + encodeURIComponent(name) + (u.enabled ? "/disable" : "/enable"), {});
    user(name);
  } }, u.enabled ? t("disable") : t("enable"));
  const grace = h("input", { id: "regen-grace", name: "grace", placeholder: "10m", title: t("grace") });
  const regen = h("button", { id: "regen-btn", type: "button", class: "secondary", onclick: async () => {
    if (!window.confirm(t("confirm_regen"))) return;
    await act("users/" + encodeURIComponent(name) + "/regenerate", { grace: grace.value });
    user(name);
  } }, t("regenerate"));
  // Removal: a second step where the name must be typed; the server checks it too.
  const removeName = h("input", { id: "remove-name", name: "name", autocomplete: "off" });
  const removeGo = h("button", { id: "remove-confirm", type: "button", class: "danger", disabled: true, onclick: async () => {
    if (await act("users/" + encodeURIComponent(name) + "/remove", { name: removeName.value })) {
      say(t("removed"));
      location.hash = "#/users";
    }
  } }, t("remove"));
  removeName.addEventListener("input", () => { removeGo.disabled = removeName.value !== u.name; });
  const removeBox = h("div", { id: "remove-box", class: "row", hidden: true },
    h("label", { for: "remove-name", class: "muted" }, t("confirm_remove")), removeName, removeGo);
  const removeBtn = h("button", { id: "remove-btn", type: "button", class: "danger", onclick: () => {
    removeBox.hidden = false;
    removeName.focus();
  } }, t("remove"));
  const lim = h("form", { class: "grid", id: "limits-form" }, limitFields("lim-", u.limits),
    h("span"), h("div", {}, h("button", { id: "lim-save", type: "submit" }, t("save")), " ", h("span", { class: "muted" }, t("empty_clears"))));
  lim.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (await act("users/" + encodeURIComponent(name) + "/limits", formValues(lim))) user(name);
  });
  setMain(
    h("h1", {}, u.name, " ", h("span", { id: "user-state", class: "tag " + (u.enabled ? "on" : "off") }, u.enabled ? t("enabled") : t("disabled"))),
    h("div", { class: "cards" },
      card(t("kind"), u.kind + (u.domain ? ` (${u.domain})` : "")), card(t("secret"), u.secret_masked),
      card(t("active"), us.connections_active || 0), card(t("ips"), us.unique_ips_active || 0),
      card(t("usage"), bytes(us.quota_used_bytes || 0)), card(t("last_seen"), when(us.last_seen)),
      card(t("created"), (u.created || "–").slice(0, 10)), card(t("rotated"), (u.rotated || "–").slice(0, 10)),
      u.previous_secret_expires ? card(t("old_until"), u.previous_secret_expires.replace("T", " ").replace("Z", " UTC"), "old-until") : null),
    h("h2", {}, t("traffic_24h")), chart("chart-24h", (u.history || {}).minutes, 600, 144, u.now),
    h("h2", {}, t("traffic_30d")), chart("chart-30d", (u.history || {}).hours, 86400, 30, u.now),
    h("h2", {}, t("links")), h("div", { class: "panel" }, secretBox),
    h("h2", {}, t("state")), h("div", { class: "panel noprint" }, h("div", { class: "row" }, toggle),
      h("div", { class: "row" }, regen, h("label", { for: "regen-grace", class: "muted" }, t("grace")), grace)),
    h("h2", { class: "noprint" }, t("limits")), h("div", { class: "panel noprint" }, lim),
    h("h2", { class: "noprint" }, t("remove")), h("div", { class: "panel noprint" }, h("div", { class: "row" }, removeBtn), removeBox),
  );
}

async function act(path, body) {
  try {
    await api("POST", path, body);
    say(t("saved"));
    return true;
  } catch (x) {
    if (x.status !== 401) say(x.message, true);
    return false;
  }
}

function addUser() {
  const kind = h("select", { id: "add-kind", name: "kind" },
    h("option", { value: "dd" }, t("kind_dd")), h("option", { value: "ee" }, t("kind_ee")), h("option", { value: "classic" }, t("kind_classic")));
  const domain = h("input", { id: "add-domain", name: "domain", placeholder: "www.example.com" });
  const form = h("form", { class: "grid", id: "add-form" },
    h("label", { for: "add-name" }, t("name")), h("input", { id: "add-name", name: "name", required: true, pattern: "[A-Za-z0-9_.\\-]{1,64}" }),
    h("label", { for: "add-kind" }, t("kind")), kind,
    h("label", { for: "add-domain" }, t("domain")), domain,
    limitFields("add-", {}),
    h("span"), h("button", { id: "add-submit", type: "submit" }, t("create")));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api("POST", "users", formValues(form));
      say(t("added"));
      location.hash = "#/user/" + encodeURIComponent(r.name);
    } catch (x) {
      if (x.status !== 401) say(x.message, true);
    }
  });
  setMain(h("h1", {}, t("add_user")), h("div", { class: "panel" }, form));
}

async function route() {
  clearInterval(refreshTimer);
  translateStatic();
  if (!csrf) {
    try {
      csrf = (await api("GET", "session")).csrf;
    } catch (x) {
      return; // showLogin ran
    }
  }
  document.getElementById("nav").hidden = false;
  document.getElementById("logout").hidden = false;
  const hash = location.hash || "#/";
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", a.getAttribute("href") === hash));
  try {
    if (hash.startsWith("#/user/")) await user(decodeURIComponent(hash.slice(7)));
    else if (hash === "#/users") await users();
    else if (hash === "#/add") addUser();
    else {
      await overview();
      refreshTimer = setInterval(() => overview().catch(() => {}), 10000);
    }
  } catch (x) {
    if (x.status !== 401) setMain(h("p", { class: "error" }, x.message));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("lang").addEventListener("click", () => {
    lang = lang === "ru" ? "en" : "ru";
    localStorage.setItem("vmp-lang", lang);
    route();
  });
  document.getElementById("logout").addEventListener("click", async () => {
    await api("POST", "logout").catch(() => {});
    csrf = null;
    showLogin();
  });
  window.addEventListener("hashchange", route);
  route();
});

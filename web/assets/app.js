'use strict';
// The Latch web console. Every read and change goes through the admin API
// (/v1/admin/...) with the session cookie; changes carry the session's
// CSRF token in the X-CSRF-Token header.

const app = { me: null, page: 'overview', status: null, renderSeq: 0, params: new URLSearchParams(), cleanups: [] };

class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body, contentType) {
  const opts = { method, credentials: 'same-origin', headers: {} };
  if (method !== 'GET' && method !== 'HEAD') {
    opts.headers['X-CSRF-Token'] = app.me ? app.me.csrf : '';
  }
  if (body !== undefined) {
    opts.headers['Content-Type'] = contentType || 'application/json';
    opts.body = contentType ? body : JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  if (resp.status === 401) {
    window.location.assign('/console/login');
    throw new APIError(401, 'not logged in');
  }
  const text = await resp.text();
  let data = null;
  if (text) { try { data = JSON.parse(text); } catch (e) { data = text; } }
  if (!resp.ok) {
    throw new APIError(resp.status, (data && data.error) || ('the coordinator answered ' + resp.status));
  }
  return data;
}

// h builds an element: h('button', {type: 'button', onclick: fn}, 'Save').
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = v;
    else if (k === 'value') el.value = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let fieldSeq = 0;
// field is a labelled form control.
function field(label, control, hint) {
  if (!control.id) control.id = 'f' + (++fieldSeq);
  const parts = [h('label', { for: control.id }, label), control];
  if (hint) {
    const hid = control.id + '-hint';
    control.setAttribute('aria-describedby', hid);
    parts.push(h('span', { id: hid, class: 'hint' }, hint));
  }
  return h('div', { class: 'field' }, parts);
}

function table(headers, rows, caption) {
  return h('table', {},
    caption ? h('caption', { class: 'muted' }, caption) : null,
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
    h('tbody', {}, rows.length ? rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c))))
      : h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, 'None.'))));
}

const isAdmin = () => app.me && app.me.role === 'admin';
const fmtLabels = (l) => Object.entries(l || {}).sort().map(([k, v]) => k + '=' + v).join(', ');
function fmtTime(t) {
  if (!t || t.startsWith('0001-')) return '—';
  return new Date(t).toLocaleString();
}
function ago(t) {
  if (!t || t.startsWith('0001-')) return 'never';
  const s = Math.round((Date.now() - new Date(t).getTime()) / 1000);
  if (s < 60) return s + ' s ago';
  if (s < 3600) return Math.round(s / 60) + ' min ago';
  if (s < 86400) return Math.round(s / 3600) + ' h ago';
  return Math.round(s / 86400) + ' d ago';
}
function parseLabels(s) {
  const out = {};
  for (const part of s.split(',').map((x) => x.trim()).filter(Boolean)) {
    const i = part.indexOf('=');
    if (i <= 0) throw new Error('label "' + part + '": write labels as key=value, separated by commas');
    out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

function notice(msg, isError) {
  const n = document.getElementById('notice');
  n.textContent = msg;
  n.className = 'notice' + (isError ? ' error' : '');
}

// run performs a change and reports its outcome.
async function run(what, fn) {
  try {
    const r = await fn();
    notice(what + ': done.');
    return r;
  } catch (e) {
    notice(what + ' failed: ' + e.message, true);
    throw e;
  }
}

function confirmDialog(text) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = text;
  return new Promise((resolve) => {
    const yes = document.getElementById('confirm-yes');
    const no = document.getElementById('confirm-no');
    const done = (v) => {
      yes.removeEventListener('click', onYes);
      no.removeEventListener('click', onNo);
      dlg.removeEventListener('cancel', onNo);
      dlg.close();
      resolve(v);
    };
    const onYes = () => done(true);
    const onNo = () => done(false);
    yes.addEventListener('click', onYes);
    no.addEventListener('click', onNo);
    dlg.addEventListener('cancel', onNo);
    dlg.showModal();
    no.focus();
  });
}

function viewerNote() {
  return isAdmin() ? '' : h('p', { class: 'hint', id: 'viewer-note' }, 'You are a viewer: you can look at everything but change nothing.');
}

// copyButton copies the value of input.
function copyButton(input, label) {
  return h('button', { type: 'button', class: 'secondary', onclick: async () => {
    input.select();
    try { await navigator.clipboard.writeText(input.value); notice('Copied.'); } catch (e) { document.execCommand('copy'); notice('Copied.'); }
  } }, label || 'Copy');
}

// ---- pages

const pages = {};

pages.overview = async (main) => {
  const [st, flows, pending] = await Promise.all([api('GET', '/v1/admin/status'), api('GET', '/v1/admin/flows/denied'),
    api('GET', '/v1/admin/spiffe/nodes?status=pending')]);
  app.status = st;
  const online = st.nodes.filter((n) => n.online);
  const offline = st.nodes.filter((n) => !n.online);
  const ttlMs = parseDuration(st.svidTTL);
  const now = new Date(st.now).getTime();
  const expiring = st.nodes.filter((n) => n.certExpires && !n.certExpires.startsWith('0001-') &&
    new Date(n.certExpires).getTime() - now < ttlMs / 4);
  main.append(
    h('h1', { tabindex: '-1' }, 'Overview'),
    h('div', { class: 'cards' },
      (pending || []).length ? h('section', { class: 'card wide attention', id: 'ov-spiffe-pending', 'aria-labelledby': 'ov-spiffe' },
        h('h2', { id: 'ov-spiffe' }, 'SPIFFE IDs waiting for approval'),
        h('p', {}, h('span', { class: 'big warn', id: 'spiffe-pending-count' }, String(pending.length)), ' ',
          pending.length === 1 ? 'node with an SVID from SPIRE matches no mapping' : 'nodes with SVIDs from SPIRE match no mapping',
          ': ', h('a', { href: '#spiffe' }, (isAdmin() ? 'approve or reject ' : 'see ') + (pending.length === 1 ? 'it' : 'them')), '.')) : null,
      h('section', { class: 'card', 'aria-labelledby': 'ov-nodes' },
        h('h2', { id: 'ov-nodes' }, 'Nodes'),
        h('p', {}, h('span', { class: 'big ok', id: 'nodes-online' }, String(online.length)), ' online · ',
          h('span', { class: 'big bad', id: 'nodes-offline' }, String(offline.length)), ' offline'),
        h('ul', {}, st.nodes.map((n) => h('li', {}, h('a', { href: '#nodes' }, n.name), ' ',
          h('span', { class: 'badge ' + (n.online ? 'online' : 'offline') }, n.online ? 'online' : 'offline'))))),
      h('section', { class: 'card', 'aria-labelledby': 'ov-svid' },
        h('h2', { id: 'ov-svid' }, 'SVIDs close to expiry'),
        expiring.length ? h('ul', {}, expiring.map((n) => h('li', { class: 'warn' }, n.name + ': expires ' + fmtTime(n.certExpires))))
          : h('p', { class: 'muted' }, 'None: every node certificate has more than a quarter of its lifetime (' + st.svidTTL + ') left.')),
      h('section', { class: 'card', 'aria-labelledby': 'ov-ns' },
        h('h2', { id: 'ov-ns' }, 'Namespaces'),
        table(['Namespace', 'Mode'], (st.namespaces || []).map((ns) => [ns.name, [h('span', { class: 'badge ' + ns.mode }, ns.mode),
          ns.mode === 'monitor' ? [' ', h('a', { href: '#suggest?namespace=' + encodeURIComponent(ns.name) }, 'suggest a policy')] : null]])),
        h('p', { class: 'hint' }, 'Baseline for directions no policy isolates: ' + st.baseline + '.')),
      h('section', { class: 'card wide', 'aria-labelledby': 'ov-flows' },
        h('h2', { id: 'ov-flows' }, 'Recent denied flows'),
        !flows.available ? h('p', { class: 'muted', id: 'no-flow-data' }, 'No flow data yet: flow telemetry is not available on this coordinator.')
          : flows.flows.length === 0 ? h('p', { class: 'muted', id: 'no-denied-flows' }, 'No denied flows recently.')
            : table(['When', 'From', 'To', 'Port', 'Reported by'], flows.flows.slice(0, 10).map((f) => [h('span', { class: 'mono', title: f.time }, fmtFlowTime(f.time)), f.from, f.to,
              f.port + '/' + f.protocol + (f.monitor ? ' (monitor)' : ''), f.node || ''])),
        flows.available ? h('p', {}, h('a', { href: '#flows?verdict=denied' }, 'Denied flows'), ' · ',
          h('a', { href: '#flows?verdict=would-deny' }, 'Would-deny flows (monitor mode)'), ' · ', h('a', { href: '#suggest' }, 'Policy suggestions')) : null)));
};

function parseDuration(s) {
  let ms = 0;
  const re = /([\d.]+)(h|ms|m|s|us|µs|ns)/g;
  let m;
  const unit = { h: 3600e3, m: 60e3, s: 1e3, ms: 1, us: 1e-3, 'µs': 1e-3, ns: 1e-6 };
  while ((m = re.exec(s)) !== null) ms += parseFloat(m[1]) * unit[m[2]];
  return ms || 3600e3;
}

pages.nodes = async (main) => {
  const [st, wls] = await Promise.all([api('GET', '/v1/admin/status'), api('GET', '/v1/admin/workloads')]);
  main.append(h('h1', { tabindex: '-1' }, 'Nodes'), viewerNote());
  const rows = st.nodes.map((n) => {
    const peers = h('div', { class: 'peers' });
    const ws = (wls || []).filter((w) => w.node === n.name).map((w) => w.namespace + '/' + w.name + ' ' + w.ip);
    return [
      h('strong', {}, n.name),
      h('div', {}, h('span', { class: 'mono' }, n.spiffeID), ' ', identityBadge(n.identity, n.name)),
      n.namespace,
      fmtLabels(n.labels),
      h('span', { class: 'mono' }, [n.ip, ...(n.endpoints || [])].join('\n')),
      ws.length ? h('ul', {}, ws.map((w) => h('li', {}, w))) : h('span', { class: 'muted' }, 'none'),
      h('span', { class: 'badge ' + (n.online ? 'online' : 'offline'), 'data-node-status': n.name }, n.online ? 'online' : 'offline'),
      h('span', { title: fmtTime(n.lastSeen) }, ago(n.lastSeen)),
      n.identity === 'spire' ? h('span', { class: 'muted' }, 'rotated by SPIRE') : fmtTime(n.certExpires),
      h('div', {},
        h('button', { type: 'button', class: 'secondary', 'aria-label': 'Show the peers of ' + n.name, onclick: async () => {
          peers.textContent = 'loading…';
          try {
            const v = await api('GET', '/v1/admin/nodes/' + encodeURIComponent(n.name) + '/view');
            peers.replaceChildren(v.peers && v.peers.length
              ? h('ul', {}, v.peers.map((p) => h('li', {}, p.node + ' (' + (p.allowedIPs || []).join(', ') + ')')))
              : h('span', { class: 'muted' }, 'sees no peers'));
          } catch (e) { peers.textContent = e.message; }
        } }, 'Peers'),
        isAdmin() ? h('button', { type: 'button', class: 'danger', 'data-revoke': n.name, 'aria-label': 'Revoke ' + n.name, onclick: async () => {
          if (!await confirmDialog('Revoke node ' + n.name + '? Its certificate is revoked, its workloads removed and every peer drops it.')) return;
          await run('Revoking ' + n.name, () => api('DELETE', '/v1/admin/nodes/' + encodeURIComponent(n.name)));
          render();
        } }, 'Revoke') : null,
        peers),
    ];
  });
  main.append(table(['Name', 'Identity (SPIFFE ID)', 'Namespace', 'Labels', 'Addresses', 'Workloads', 'Status', 'Last seen', 'SVID expires', ''], rows));
};

// identityBadge says where a node's identity comes from: an SVID of the
// trusted SPIRE deployment, or of the coordinator's CA (join token).
function identityBadge(identity, name) {
  return identity === 'spire'
    ? h('span', { class: 'badge spire', 'data-identity': name, title: 'SVID from the trusted SPIRE deployment' }, 'SPIRE')
    : h('span', { class: 'badge ca', 'data-identity': name, title: 'SVID from the coordinator\'s CA, enrolled with a join token' }, 'join token');
}

// ---- SPIFFE identities from SPIRE

// spiffeApprove and spiffeReject decide on a SPIFFE ID through the admin API.
const spiffeApprove = (id, namespace, labels, workloads, workloadIDs) => api('POST', '/v1/admin/spiffe/nodes/approve', { node: id, namespace, labels, workloads, workloadIDs });

// nonEmptyLines are the non-empty lines of a textarea, trimmed.
const nonEmptyLines = (text) => text.split('\n').map((x) => x.trim()).filter((x) => x !== '');
const spiffeReject = (id) => api('POST', '/v1/admin/spiffe/nodes/reject', { node: id });

// approveDialog asks for the namespace and labels of a SPIFFE ID and
// approves it; the coordinator's refusal (a bad label, a name taken)
// shows in the dialog, which stays open. It resolves to the admitted
// node, or null when cancelled.
function approveDialog(rec, namespaces) {
  const ns = h('input', { id: 'approve-namespace', list: 'approve-ns-list', required: true, autocomplete: 'off', value: 'default' });
  const dl = h('datalist', { id: 'approve-ns-list' }, (namespaces || []).map((n) => h('option', { value: n.name })));
  const labels = h('input', { id: 'approve-labels', placeholder: 'role=server,site=paris', autocomplete: 'off' });
  const workloads = h('textarea', { id: 'approve-workloads', rows: 2, spellcheck: 'false', autocomplete: 'off', placeholder: 'namespace=prod,labels=app=web,name=web-*' });
  const ids = h('textarea', { id: 'approve-workload-ids', rows: 2, spellcheck: 'false', autocomplete: 'off', placeholder: 'spiffe://example.org/prod/web1/*' });
  const err = h('p', { id: 'approve-error', class: 'error', role: 'alert' });
  const cancel = h('button', { type: 'button', id: 'approve-cancel', class: 'secondary' }, 'Cancel');
  const submit = h('button', { type: 'submit', id: 'approve-submit' }, 'Approve');
  const form = h('form', {},
    h('h2', { id: 'approve-title' }, 'Approve node ' + rec.name),
    h('p', {}, 'SPIFFE ID ', h('code', { id: 'approve-id' }, rec.id), '. The node joins the namespace with these labels and gets an overlay address; its next request to the coordinator goes through.'),
    field('Namespace', ns, 'created if it does not exist'), dl,
    field('Labels', labels, 'key=value, comma separated; may be empty'),
    field('Workloads it may host', workloads, 'one grant per line: namespace=NS[,labels=k=v;k=v][,name=PATTERN]; none if empty'),
    field('Workload SPIFFE IDs it may declare', ids, 'one pattern per line; none if empty'),
    err, h('div', { class: 'actions' }, cancel, submit));
  const dlg = h('dialog', { id: 'approve', 'aria-labelledby': 'approve-title' }, form);
  const opener = document.activeElement;
  document.body.append(dlg);
  return new Promise((resolve) => {
    let result = null;
    dlg.addEventListener('close', () => {
      dlg.remove();
      if (opener && opener.isConnected) opener.focus();
      resolve(result);
    });
    cancel.addEventListener('click', () => dlg.close());
    form.addEventListener('input', () => { err.textContent = ''; });
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      let l;
      try { l = parseLabels(labels.value); } catch (e) { err.textContent = e.message; labels.focus(); return; }
      if (!ns.value.trim()) { err.textContent = 'Name the namespace the node joins.'; ns.focus(); return; }
      submit.disabled = true;
      err.textContent = '';
      try {
        result = await spiffeApprove(rec.id, ns.value.trim(), l, nonEmptyLines(workloads.value), nonEmptyLines(ids.value));
        notice('Approving ' + rec.id + ': done. Node ' + result.name + ' is in namespace ' + result.namespace + ' with address ' + result.ip + '.');
        dlg.close();
      } catch (e) {
        err.textContent = 'The coordinator refused: ' + e.message;
        submit.disabled = false;
      }
    });
    dlg.showModal();
    ns.focus();
    ns.select();
  });
}

// spiffeButtons are an admin's actions on a SPIFFE ID record: approve a
// pending or rejected one, reject a pending or admitted one.
function spiffeButtons(rec, namespaces) {
  if (!isAdmin()) return '';
  const approve = rec.status !== 'admitted' ? h('button', { type: 'button', 'data-approve-spiffe': rec.id,
    'aria-label': 'Approve ' + rec.id, onclick: async () => {
      if (await approveDialog(rec, namespaces)) render();
    } }, 'Approve…') : null;
  const reject = rec.status !== 'rejected' ? h('button', { type: 'button', class: 'danger', 'data-reject-spiffe': rec.id,
    'aria-label': 'Reject ' + rec.id, onclick: async () => {
      const q = rec.status === 'admitted'
        ? 'Reject ' + rec.id + '? Node ' + rec.name + ' is removed with its workloads, every peer drops it, and the ID is refused from then on.'
        : 'Reject ' + rec.id + '? Node ' + rec.name + ' is refused from then on; you can still approve it later.';
      if (!await confirmDialog(q)) return;
      await run('Rejecting ' + rec.id, () => spiffeReject(rec.id));
      render();
    } }, 'Reject') : null;
  return h('div', {}, approve, reject);
}

const spiffeStatusBadge = (s) => h('span', { class: 'badge spiffe-' + s }, s);

pages.spiffe = async (main) => {
  const status = ['admitted', 'rejected'].includes(app.params.get('status')) ? app.params.get('status') : '';
  const [all, nss] = await Promise.all([api('GET', '/v1/admin/spiffe/nodes'), api('GET', '/v1/admin/namespaces')]);
  const recs = all || [];
  const pending = recs.filter((r) => r.status === 'pending');
  const decided = recs.filter((r) => r.status !== 'pending' && (!status || r.status === status));
  main.append(h('h1', { tabindex: '-1' }, 'SPIFFE identities'), viewerNote(),
    h('p', { class: 'hint' }, 'Nodes that present an SVID from the trusted SPIRE deployment. An ID that matches an entry of the coordinator\'s --spiffe-map is admitted at once; any other waits here until an admin approves it into a namespace with labels, or rejects it. The list updates live when an ID starts waiting.'));
  const pendingTable = table(['SPIFFE ID', 'Proposed node name', 'First seen', 'Last seen', ''], pending.map((r) => [
    h('code', { 'data-spiffe-id': r.id }, r.id), h('strong', {}, r.name),
    h('span', { title: fmtTime(r.firstSeen) }, ago(r.firstSeen)), h('span', { title: fmtTime(r.lastSeen) }, ago(r.lastSeen)),
    spiffeButtons(r, nss)]), pending.length + ' waiting for approval');
  pendingTable.id = 'spiffe-pending';
  const filter = h('select', { id: 'spiffe-status' }, h('option', { value: '' }, 'Admitted and rejected'),
    h('option', { value: 'admitted' }, 'Admitted'), h('option', { value: 'rejected' }, 'Rejected'));
  filter.value = status;
  filter.addEventListener('change', () => {
    window.location.hash = '#spiffe' + (filter.value ? '?status=' + filter.value : '');
  });
  const decidedTable = table(['SPIFFE ID', 'Node name', 'Status', 'First seen', 'Last seen', ''], decided.map((r) => [
    h('code', { 'data-spiffe-id': r.id }, r.id), r.name, spiffeStatusBadge(r.status),
    h('span', { title: fmtTime(r.firstSeen) }, ago(r.firstSeen)), h('span', { title: fmtTime(r.lastSeen) }, ago(r.lastSeen)),
    spiffeButtons(r, nss)]));
  decidedTable.id = 'spiffe-decided';
  main.append(h('section', { 'aria-labelledby': 'spiffe-pending-h' }, h('h2', { id: 'spiffe-pending-h' }, 'Waiting for approval'), pendingTable),
    h('section', { 'aria-labelledby': 'spiffe-decided-h' }, h('h2', { id: 'spiffe-decided-h' }, 'Decided'),
      h('div', { class: 'row' }, field('Status', filter)), decidedTable,
      h('p', { class: 'hint' }, 'Deleting an admitted node (Nodes page) forgets its ID: when it comes back it is mapped again or waits here. A rejected ID is refused until approved.')));
};

// routeButtons are an admin's actions on an advertised subnet route:
// approve one that is not approved, reject one that is not rejected.
function routeButtons(r) {
  if (!isAdmin()) return '';
  const key = r.node + ' ' + r.prefix;
  const approve = r.status !== 'approved' ? h('button', { type: 'button', 'data-approve-route': key,
    'aria-label': 'Approve route ' + r.prefix + ' of ' + r.node, onclick: async () => {
      await run('Approving ' + r.prefix + ' of ' + r.node, () => api('POST', '/v1/admin/routes/approve', { node: r.node, prefix: r.prefix }));
      render();
    } }, 'Approve') : null;
  const reject = r.status !== 'rejected' ? h('button', { type: 'button', class: 'danger', 'data-reject-route': key,
    'aria-label': 'Reject route ' + r.prefix + ' of ' + r.node, onclick: async () => {
      if (!await confirmDialog('Reject ' + r.prefix + ' of node ' + r.node + '? It stays rejected while the node advertises it; you can still approve it later.')) return;
      await run('Rejecting ' + r.prefix + ' of ' + r.node, () => api('POST', '/v1/admin/routes/reject', { node: r.node, prefix: r.prefix }));
      render();
    } }, 'Reject') : null;
  return h('div', {}, approve, reject);
}

const routeStatusBadge = (s) => h('span', { class: 'badge route-' + s }, s);

pages.routes = async (main) => {
  const rs = (await api('GET', '/v1/admin/routes')) || [];
  main.append(h('h1', { tabindex: '-1' }, 'Subnet routes'), viewerNote(),
    h('p', { class: 'hint' }, 'Subnets that gateway nodes advertise (latch node --advertise-routes). A route takes effect only once an admin approves it; a rejected route stays rejected while the node advertises it. For each site address, the lowest-named online gateway with an approved route is primary and carries it; when it goes offline, the next one takes over.'));
  const t = table(['Node', 'Prefix', 'SNAT', 'Status', 'Primary', 'Gateway', 'Advertised', 'Decided', ''], rs.map((r) => [
    r.node, h('code', { 'data-route': r.node + ' ' + r.prefix }, r.prefix), r.snat ? 'yes' : 'no', routeStatusBadge(r.status),
    h('span', { 'data-route-primary': r.node + ' ' + r.prefix }, r.status !== 'approved' ? '—' : r.primary ? 'primary' : 'standby'),
    h('span', { 'data-route-online': r.node + ' ' + r.prefix }, r.online ? 'online' : 'offline'),
    h('span', { title: fmtTime(r.advertisedAt) }, ago(r.advertisedAt)),
    r.decidedBy ? h('span', { title: fmtTime(r.decidedAt) }, ago(r.decidedAt) + ' by ' + r.decidedBy) : '—',
    routeButtons(r)]));
  t.id = 'routes';
  main.append(t);
};

// ---- sites

// v4Range reads an IPv4 prefix, 198.19.1.0/24, as its first and last
// addresses (numbers); null if it is none.
function v4Range(s) {
  const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)\/(\d+)$/.exec(String(s));
  if (!m || +m[5] > 32) return null;
  const addr = ((+m[1] * 256 + +m[2]) * 256 + +m[3]) * 256 + +m[4];
  const size = 2 ** (32 - +m[5]);
  const lo = addr - (addr % size);
  return { lo, hi: lo + size - 1 };
}

// siteGateways are the gateways whose approved routes overlap cidr, by
// node name: each with its route and whether the route covers all of cidr
// or a part of it.
function siteGateways(cidr, routes) {
  const c = v4Range(cidr);
  if (!c) return [];
  return routes.filter((r) => r.status === 'approved').map((r) => ({ r, p: v4Range(r.prefix) }))
    .filter(({ p }) => p && p.lo <= c.hi && c.lo <= p.hi)
    .map(({ r, p }) => ({ node: r.node, prefix: r.prefix, whole: p.lo <= c.lo && c.hi <= p.hi }))
    .sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
}

const fmtPort = (p) => (p.name ? p.name + ' ' : '') + p.port + '/' + (p.protocol || 'TCP');
// fmtPortSpec writes a port as the site form reads it: [NAME=]PORT[/PROTOCOL].
const fmtPortSpec = (p) => (p.name ? p.name + '=' : '') + p.port + (p.protocol ? '/' + p.protocol : '');
// splitList splits on commas and white space.
const splitList = (s) => s.split(/[\s,]+/).filter(Boolean);

// parsePorts reads the site form's ports: [NAME=]PORT[/PROTOCOL], comma
// separated.
function parsePorts(s) {
  return splitList(s).map((part) => {
    const m = /^(?:([^=/]+)=)?(\d+)(?:\/([A-Za-z]+))?$/.exec(part);
    if (!m || +m[2] < 1 || +m[2] > 65535) throw new Error('port "' + part + '": write [NAME=]PORT[/PROTOCOL] with a port from 1 to 65535, such as postgres=5432/TCP');
    const p = { port: +m[2] };
    if (m[1]) p.name = m[1];
    if (m[3]) p.protocol = m[3].toUpperCase();
    return p;
  });
}

// siteForm is an admin's form to declare or replace a site; the
// coordinator's refusal shows in it as the coordinator words it. It
// returns the form and the function that fills it with a site.
function siteForm() {
  const ns = h('input', { id: 'site-namespace', autocomplete: 'off', required: true });
  const name = h('input', { id: 'site-name', autocomplete: 'off', required: true });
  const labels = h('input', { id: 'site-labels', autocomplete: 'off', placeholder: 'role=db,env=prod' });
  const cidrs = h('input', { id: 'site-cidrs', autocomplete: 'off', required: true, placeholder: '198.19.1.0/24, 198.19.2.0/24' });
  const ports = h('input', { id: 'site-ports', autocomplete: 'off', placeholder: 'postgres=5432/TCP, 53/UDP' });
  const err = h('p', { id: 'site-error', class: 'error', role: 'alert' });
  const save = h('button', { type: 'submit', id: 'site-save' }, 'Save site');
  const form = h('form', { class: 'card', id: 'site-form', 'aria-labelledby': 'site-form-h', onsubmit: async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    let req;
    try {
      if (!ns.value.trim() || !name.value.trim()) throw new Error('Give the site\'s namespace and name.');
      req = { labels: parseLabels(labels.value), cidrs: splitList(cidrs.value), ports: parsePorts(ports.value) };
    } catch (e) { err.textContent = e.message; return; }
    const key = ns.value.trim() + '/' + name.value.trim();
    save.disabled = true;
    try {
      await api('PUT', '/v1/admin/sites/' + encodeURIComponent(ns.value.trim()) + '/' + encodeURIComponent(name.value.trim()), req);
    } catch (e) {
      err.textContent = 'The coordinator refused: ' + e.message;
      notice('Saving site ' + key + ' failed; nothing changed.', true);
      save.disabled = false;
      return;
    }
    notice('Saving site ' + key + ': done.');
    await render();
  } },
  h('h2', { id: 'site-form-h' }, 'Declare or replace a site'),
  h('p', { class: 'hint' }, 'Saving a site of an existing namespace/name replaces it whole. A CIDR may overlap neither the overlay range nor another site.'),
  h('div', { class: 'row' }, field('Namespace', ns, 'created if it does not exist'), field('Name', name, 'unique among the namespace\'s sites, nodes and workloads'),
    field('Labels', labels, 'key=value, comma separated; may be empty')),
  h('div', { class: 'row' }, field('CIDRs', cidrs, 'IPv4 prefixes, comma separated'),
    field('Ports', ports, '[NAME=]PORT[/PROTOCOL], comma separated (TCP if not given); may be empty')),
  err, save);
  form.addEventListener('input', () => { err.textContent = ''; });
  const fill = (s) => {
    ns.value = s.namespace;
    name.value = s.name;
    labels.value = fmtLabels(s.labels);
    cidrs.value = (s.cidrs || []).join(', ');
    ports.value = (s.ports || []).map(fmtPortSpec).join(', ');
    err.textContent = '';
    form.scrollIntoView({ block: 'nearest' });
    ns.focus();
  };
  return [form, fill];
}

pages.sites = async (main) => {
  const [sites, routes] = await Promise.all([api('GET', '/v1/admin/sites'), api('GET', '/v1/admin/routes')]);
  const ss = sites || [];
  main.append(h('h1', { tabindex: '-1' }, 'Sites'), viewerNote(),
    h('p', { class: 'hint' }, 'Networks of hosts that run no agent (latch admin site set). For policy, the host at each address of a site\'s CIDRs is a pod of its namespace with its labels; its ports are what named ports resolve against. Gateways are the nodes whose approved subnet routes cover a CIDR; for each address, the lowest-named online one is primary (see Subnet routes).'));
  const [form, fill] = isAdmin() ? siteForm() : [null, null];
  const t = table(['Site', 'Labels', 'CIDRs and their gateways', 'Ports', ''], ss.map((s) => {
    const key = s.namespace + '/' + s.name;
    return [h('strong', {}, key), fmtLabels(s.labels),
      h('ul', { class: 'plain' }, (s.cidrs || []).map((c) => {
        const gws = siteGateways(c, routes || []);
        return h('li', { 'data-site-cidr': key + ' ' + c }, h('code', {}, c), ': ',
          gws.length ? gws.map((g, i) => [i ? ', ' : '', h('strong', {}, g.node), ' (' + g.prefix + (g.whole ? '' : ', part of it') + ')'])
            : h('span', { class: 'warn' }, 'no approved route covers it'));
      })),
      (s.ports || []).map(fmtPort).join(', ') || h('span', { class: 'muted' }, 'none'),
      isAdmin() ? h('div', {},
        h('button', { type: 'button', class: 'secondary', 'data-edit-site': key, 'aria-label': 'Edit site ' + key, onclick: () => fill(s) }, 'Edit'),
        h('button', { type: 'button', class: 'danger', 'data-delete-site': key, 'aria-label': 'Delete site ' + key, onclick: async () => {
          if (!await confirmDialog('Delete site ' + key + '? Policies no longer see its hosts, and no node is given a gateway to it any more.')) return;
          await run('Deleting site ' + key, () => api('DELETE', '/v1/admin/sites/' + encodeURIComponent(s.namespace) + '/' + encodeURIComponent(s.name)));
          render();
        } }, 'Delete')) : ''];
  }));
  t.id = 'sites';
  if (ss.length) t.querySelectorAll('tbody tr').forEach((tr, i) => { tr.dataset.site = ss[i].namespace + '/' + ss[i].name; });
  main.append(t);
  if (form) main.append(form);
};

pages.workloads = async (main) => {
  const wls = await api('GET', '/v1/admin/workloads');
  main.append(h('h1', { tabindex: '-1' }, 'Workloads'),
    table(['Namespace', 'Name', 'Node', 'Labels', 'Address', 'Ports'], (wls || []).map((w) => [w.namespace, w.name, w.node || '',
      fmtLabels(w.labels), h('span', { class: 'mono' }, w.ip),
      (w.ports || []).map((p) => (p.name ? p.name + ' ' : '') + p.port + '/' + (p.protocol || 'TCP')).join(', ')])));
};

pages.namespaces = async (main) => {
  const nss = await api('GET', '/v1/admin/namespaces');
  main.append(h('h1', { tabindex: '-1' }, 'Namespaces'), viewerNote(),
    h('p', { class: 'hint' }, 'enforce drops what policy denies; monitor drops nothing and reports what would be dropped.'));
  const rows = (nss || []).map((ns) => {
    if (!isAdmin()) return [ns.name, fmtLabels(ns.labels), h('span', { class: 'badge ' + ns.mode }, ns.mode), ''];
    const labels = h('input', { id: 'ns-labels-' + ns.name, value: fmtLabels(ns.labels).replace(/, /g, ',') });
    const mode = h('select', { id: 'ns-mode-' + ns.name },
      ['enforce', 'monitor'].map((m) => h('option', { value: m, selected: m === ns.mode }, m)));
    return [ns.name, field('Labels of ' + ns.name, labels), field('Mode of ' + ns.name, mode),
      h('button', { type: 'button', 'data-save-ns': ns.name, onclick: async () => {
        let l;
        try { l = parseLabels(labels.value); } catch (e) { notice(e.message, true); return; }
        await run('Saving namespace ' + ns.name, () => api('PUT', '/v1/admin/namespaces/' + encodeURIComponent(ns.name), { labels: l, mode: mode.value }));
        render();
      } }, 'Save')];
  });
  main.append(table(['Namespace', 'Labels', 'Mode', ''], rows));
};

// diffLines is a line diff (longest common subsequence).
function diffLines(a, b) {
  const x = a ? a.replace(/\n$/, '').split('\n') : [];
  const y = b ? b.replace(/\n$/, '').split('\n') : [];
  if (x.length * y.length > 4e6) return [...x.map((l) => ['-', l]), ...y.map((l) => ['+', l])];
  const n = x.length, m = y.length;
  const L = Array.from({ length: n + 1 }, () => new Uint32Array(m + 1));
  for (let i = n - 1; i >= 0; i--) for (let j = m - 1; j >= 0; j--) L[i][j] = x[i] === y[j] ? L[i + 1][j + 1] + 1 : Math.max(L[i + 1][j], L[i][j + 1]);
  const out = [];
  let i = 0, j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) { out.push([' ', x[i]]); i++; j++; } else if (L[i + 1][j] >= L[i][j + 1]) { out.push(['-', x[i++]]); } else { out.push(['+', y[j++]]); }
  }
  while (i < n) out.push(['-', x[i++]]);
  while (j < m) out.push(['+', y[j++]]);
  return out;
}

function renderDiff(before, after) {
  const lines = diffLines(before, after);
  const changed = lines.some(([op]) => op !== ' ');
  return h('pre', { class: 'diff' }, changed ? lines.map(([op, l]) =>
    h('span', { class: op === '+' ? 'add' : op === '-' ? 'del' : 'same' }, op + ' ' + l)) : h('span', { class: 'same' }, '(no change)'));
}

const samplePolicy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-web
  namespace: default
spec:
  podSelector:
    matchLabels:
      app: web
  policyTypes: [Ingress]
  ingress:
  - ports:
    - port: 80
      protocol: TCP
`;

const policyTable = (list) => table(['Namespace', 'Name', 'Updated'], (list || []).map((p) => [p.namespace, p.name, fmtTime(p.updatedAt)]));

pages.policies = async (main) => {
  const ps = await api('GET', '/v1/admin/policies');
  main.append(h('h1', { tabindex: '-1' }, 'Policies'), viewerNote());
  const editor = h('textarea', { id: 'policy-yaml', spellcheck: 'false', autocomplete: 'off', wrap: 'off' });
  editor.value = isAdmin() ? samplePolicy : '';
  main.append(table(['Namespace', 'Name', 'Updated', ''], (ps || []).map((p) => [p.namespace, p.name, fmtTime(p.updatedAt),
    h('div', {},
      h('button', { type: 'button', class: 'secondary', onclick: () => { editor.value = p.yaml; editor.dispatchEvent(new Event('input')); editor.focus(); } }, (isAdmin() ? 'Edit ' : 'Show ') + p.name),
      isAdmin() ? h('button', { type: 'button', class: 'danger', 'data-delete-policy': p.namespace + '/' + p.name, onclick: async () => {
        if (!await confirmDialog('Delete policy ' + p.namespace + '/' + p.name + '? Traffic it allowed may be denied at once.')) return;
        await run('Deleting policy ' + p.namespace + '/' + p.name, () => api('DELETE', '/v1/admin/policies/' + encodeURIComponent(p.namespace) + '/' + encodeURIComponent(p.name)));
        render();
      } }, 'Delete') : null)])));
  if (!isAdmin()) {
    editor.placeholder = 'Choose Show on a policy to read its YAML.';
    editor.readOnly = true;
    main.append(h('h2', {}, 'Policy YAML'), field('Policy YAML (read only)', editor));
    return;
  }
  main.append(h('h2', {}, 'Editor'),
    h('p', { class: 'hint' }, 'Paste or write NetworkPolicy YAML (several documents separated by ---). Validate shows the validator\'s messages at their lines, or the diff against the current policies; Apply applies all of it or nothing.'),
    ...policyEditor(editor, 'Policy YAML', async () => {
      const list = await api('GET', '/v1/admin/policies');
      const t = main.querySelector('table');
      if (t) t.replaceWith(policyTable(list));
    }));
};

// policyEditor returns the YAML editor's controls for an admin: the
// labelled textarea, Validate (the coordinator's validator: each message
// under its line, or the diff against the current policies), Apply
// (enabled once what is in the editor validated; all or nothing), and the
// result. onApplied runs after an apply, with the applied keys. The
// Policies and Suggestions pages share it.
function policyEditor(editor, label, onApplied) {
  const result = h('div', { id: 'policy-result', 'aria-live': 'polite' });
  const apply = h('button', { type: 'button', id: 'policy-apply', disabled: true }, 'Apply');
  let validated = null;
  editor.addEventListener('input', () => { validated = null; apply.disabled = true; });
  const validate = h('button', { type: 'button', id: 'policy-validate', onclick: async () => {
    result.replaceChildren('Validating…');
    let v;
    try { v = await api('POST', '/v1/admin/policies/validate', editor.value, 'application/yaml'); } catch (e) { result.replaceChildren(h('p', { class: 'error' }, e.message)); return; }
    if (!v.valid) {
      result.replaceChildren(h('h2', {}, 'Problems'), h('ul', { id: 'policy-problems' }, v.problems.map((p) =>
        h('li', { class: 'error' }, (p.line ? 'Line ' + p.line + ': ' : '') + (p.field ? p.field + ': ' : '') + p.reason))),
      annotate(editor.value, v.problems));
      const first = v.problems.find((p) => p.line);
      if (first) selectLine(editor, first.line);
      return;
    }
    validated = editor.value;
    apply.disabled = false;
    result.replaceChildren(h('h2', {}, 'Valid. Changes if applied'), ...v.changes.map((c) =>
      h('section', { class: 'change' }, h('h3', {}, c.key + (c.before ? '' : ' (new)')), renderDiff(c.before, c.after))));
  } }, 'Validate and show the diff');
  apply.addEventListener('click', async () => {
    if (validated !== editor.value) return;
    const r = await run('Applying policies', () => api('POST', '/v1/admin/policies?filename=console', editor.value, 'application/yaml'));
    result.replaceChildren(h('p', { class: 'ok', id: 'policy-applied' }, 'Applied: ' + r.applied.join(', ')));
    if (onApplied) await onApplied(r.applied);
  });
  return [field(label, editor), h('div', { class: 'actions-left' }, validate, apply), result];
}

function selectLine(textarea, line) {
  const lines = textarea.value.split('\n');
  let start = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
  textarea.focus();
  textarea.setSelectionRange(start, start + (lines[line - 1] || '').length);
}

// annotate lists the source with each problem's message under its line.
function annotate(text, problems) {
  const byLine = {};
  for (const p of problems) if (p.line) (byLine[p.line] = byLine[p.line] || []).push(p);
  return h('div', { class: 'annotated', id: 'policy-annotated', role: 'region', 'aria-label': 'Policy with problems marked at their lines' },
    text.split('\n').map((l, i) => {
      const ps = byLine[i + 1];
      return [h('div', { class: 'ln' + (ps ? ' err' : ''), 'data-line': i + 1 }, h('span', { class: 'num' }, String(i + 1)), h('span', {}, l || ' ')),
        ...(ps || []).map((p) => h('div', { class: 'msg', 'data-msg-line': i + 1 }, '▲ line ' + p.line + ': ' + (p.field ? p.field + ': ' : '') + p.reason))];
    }));
}

pages.whatif = async (main) => {
  const [st, wls, sites] = await Promise.all([api('GET', '/v1/admin/status'), api('GET', '/v1/admin/workloads'), api('GET', '/v1/admin/sites')]);
  const keys = [...(wls || []).map((w) => w.namespace + '/' + w.name), ...st.nodes.map((n) => n.namespace + '/' + n.name)].sort();
  const siteKeys = (sites || []).map((s) => s.namespace + '/' + s.name).sort();
  // One list of choices for both ends; an end may also be anything the
  // coordinator reads as one (a site address, NAMESPACE/SITE@PREFIX).
  const ends = h('datalist', { id: 'whatif-ends' }, keys.map((k) => h('option', { value: k })),
    siteKeys.map((k) => h('option', { value: k, label: k + ' (site)' })));
  const endInput = (id, v) => h('input', { id, list: 'whatif-ends', autocomplete: 'off', spellcheck: 'false', required: true, value: v || '' });
  const all = [...keys, ...siteKeys];
  const from = endInput('whatif-from', all[0]);
  const to = endInput('whatif-to', all.length > 1 ? all[1] : all[0]);
  const port = h('input', { id: 'whatif-port', type: 'number', min: 1, max: 65535, value: '80' });
  const proto = h('select', { id: 'whatif-proto' }, ['TCP', 'UDP', 'SCTP'].map((p) => h('option', { value: p }, p)));
  const out = h('div', { id: 'whatif-result', 'aria-live': 'polite' });
  const side = (name, s) => h('li', {}, name + ': ' + (s.allowed ? 'allows' : 'denies') +
    (!s.isolated ? ' (no policy isolates it: the baseline decides)'
      : s.allowed ? ' — allowed by ' + (s.policies || []).join(', ')
        : ' — isolated by ' + (s.policies || []).join(', ') + ', none of which allows it'));
  const verdicts = { allow: ['Allowed', 'ok'], partial: ['Partly allowed', 'warn'], deny: ['Denied', 'bad'] };
  const form = h('form', { class: 'card row', onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      const q = new URLSearchParams({ from: from.value.trim(), to: to.value.trim(), port: port.value, protocol: proto.value });
      const v = await api('GET', '/v1/admin/whatif?' + q);
      const [word, cls] = verdicts[v.verdict] || (v.allowed ? verdicts.allow : verdicts.deny);
      const ranges = v.allowedRanges || [];
      out.replaceChildren(...[h('p', { class: 'verdict ' + cls }, word),
        h('p', {}, v.from + ' → ' + v.to + ' on ' + v.port + '/' + v.protocol),
        v.egress && v.ingress ? h('ul', {}, side('Source egress', v.egress), side('Destination ingress', v.ingress)) : null,
        v.verdict ? h('section', { 'aria-labelledby': 'whatif-ranges-h' }, h('h2', { id: 'whatif-ranges-h' }, 'Allowed address pairs'),
          ranges.length ? h('ul', { id: 'whatif-ranges' }, ranges.map((r) => h('li', { class: 'mono' }, (r.from || []).join(', ') + ' → ' + (r.to || []).join(', '))))
            : h('p', { class: 'muted' }, 'None.')) : null,
        h('p', { class: 'hint' }, 'Traffic passes iff the source\'s egress and the destination\'s ingress both allow it; baseline ' + v.baseline + '.' +
          (v.verdict ? ' With a site at an end, every address pair is decided: allowed when all are, partly when some are.' : ''))].filter(Boolean));
    } catch (e) { out.replaceChildren(h('p', { class: 'error' }, e.message)); }
  } }, field('Source', from), field('Destination', to), ends, field('Port', port), field('Protocol', proto),
  h('div', { class: 'field' }, h('button', { type: 'submit', id: 'whatif-go' }, 'Decide')));
  main.append(h('h1', { tabindex: '-1' }, 'What if'),
    h('p', { class: 'hint' }, 'Decided by the reference policy evaluator over the current nodes, workloads, sites and policies. Source and destination: a workload or node (NAMESPACE/NAME), a site (NAMESPACE/SITE), part of one (NAMESPACE/SITE@198.19.1.0/25 or NAMESPACE/SITE@198.19.1.5), or a site address (198.19.1.5).'), form, out);
};

pages.graph = async (main) => {
  const nss = await api('GET', '/v1/admin/namespaces');
  const sel = h('select', { id: 'graph-ns' }, h('option', { value: '' }, 'All namespaces'), (nss || []).map((n) => h('option', { value: n.name }, n.name)));
  const holder = h('div', { id: 'graph-holder' });
  const draw = async () => {
    const g = await api('GET', '/v1/admin/graph' + (sel.value ? '?namespace=' + encodeURIComponent(sel.value) : ''));
    holder.replaceChildren(drawGraph(g), h('h2', {}, 'Allowed connections'),
      table(['From', 'To', 'Ports'], g.edges.map((e) => [e.from, e.to, e.ports.join(', ')])));
  };
  sel.addEventListener('change', draw);
  main.append(h('h1', { tabindex: '-1' }, 'Connectivity graph'),
    h('p', { class: 'hint' }, 'An arrow means the source may reach the destination on at least one port the destination declares. Green circles are nodes, blue ones workloads.'),
    h('div', { class: 'row' }, field('Namespace', sel)), holder);
  await draw();
};

function drawGraph(g) {
  const NS = 'http://www.w3.org/2000/svg';
  const s = (tag, attrs, ...kids) => {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
    for (const c of kids) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return el;
  };
  const W = 900, H = Math.max(420, 60 + g.nodes.length * 18);
  const cx = W / 2, cy = H / 2, r = Math.min(W, H) / 2 - 90;
  const pos = {};
  g.nodes.forEach((n, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, g.nodes.length) - Math.PI / 2;
    pos[n.key] = [cx + r * Math.cos(a), cy + r * Math.sin(a)];
  });
  const svg = s('svg', { class: 'graph', viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-labelledby': 'graph-title' },
    s('title', { id: 'graph-title' }, 'Connectivity graph: ' + g.nodes.length + ' workloads, ' + g.edges.length + ' allowed connections'),
    s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 22, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      s('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#6c7a92' }))));
  for (const e of g.edges) {
    const [x1, y1] = pos[e.from] || [0, 0];
    const [x2, y2] = pos[e.to] || [0, 0];
    svg.append(s('line', { x1, y1, x2, y2, 'marker-end': 'url(#arrow)' }, s('title', {}, e.from + ' → ' + e.to + ': ' + e.ports.join(', '))));
  }
  for (const n of g.nodes) {
    const [x, y] = pos[n.key];
    const right = x >= cx;
    svg.append(s('g', { 'data-key': n.key },
      s('circle', { cx: x, cy: y, r: 12, class: n.isNode ? 'node' : 'workload' }, s('title', {}, n.key + (n.node ? ' on ' + n.node : ''))),
      s('text', { x: x + (right ? 16 : -16), y: y + 4, 'text-anchor': right ? 'start' : 'end' }, n.key)));
  }
  if (!g.nodes.length) svg.append(s('text', { x: cx, y: cy, 'text-anchor': 'middle' }, 'Nothing to draw yet.'));
  return svg;
}

// ---- flows

// flowEnd names one end of a flow record: namespace/workload, or the
// address when it is no known workload.
const flowEnd = (e) => e.workload ? e.namespace + '/' + e.workload : e.ip;
function fmtFlowTime(t) {
  const d = new Date(t);
  const p = (n, w) => String(n).padStart(w || 2, '0');
  return d.toLocaleString('en', { month: 'short' }) + ' ' + d.getDate() + ' ' + p(d.getHours()) + ':' + p(d.getMinutes()) + ':' +
    p(d.getSeconds()) + '.' + p(d.getMilliseconds(), 3);
}
function fmtBytes(n) {
  if (n < 1024) return n + ' B';
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + ' KiB';
  return (n / 1024 / 1024).toFixed(1) + ' MiB';
}
const where = (e) => h('span', { class: 'muted mono' }, ' (' + [e.node, e.ip].filter(Boolean).join(', ') + ')');

// flowRow is one flow record as `hubble observe` prints it.
function flowRow(f) {
  const port = f.port ? ':' + f.port : '';
  return h('tr', { 'data-flow-id': f.id, 'data-verdict': f.verdict },
    h('td', { class: 'mono', title: f.time + ' … ' + f.end }, fmtFlowTime(f.time)),
    h('td', {}, h('strong', {}, flowEnd(f.src)), where(f.src)),
    h('td', { 'aria-hidden': 'true' }, '→'),
    h('td', {}, h('strong', {}, flowEnd(f.dst) + port + '/' + f.protocol), where(f.dst)),
    h('td', {}, h('span', { class: 'badge verdict-' + f.verdict, title: f.reason || '' }, f.verdict.toUpperCase()),
      f.reason ? h('span', { class: 'muted' }, ' (' + f.reason + ')') : null),
    h('td', { class: 'num' }, String(f.packets)),
    h('td', { class: 'num' }, fmtBytes(f.bytes)),
    h('td', {}, f.reporter + ' ', h('span', { class: 'muted' }, f.direction)));
}

// followFlows reads the admin API's follow stream (JSON lines) and calls
// onFlow for each flow, then onEnd (with the error, if any) when the
// stream ends. It returns the function that stops it.
function followFlows(query, onFlow, onEnd) {
  const ctl = new AbortController();
  (async () => {
    try {
      const resp = await fetch('/v1/admin/flows?' + query + '&follow=true', { credentials: 'same-origin', signal: ctl.signal });
      if (!resp.ok) {
        let msg = 'the coordinator answered ' + resp.status;
        try { msg = (await resp.json()).error || msg; } catch (e) { /* not JSON */ }
        throw new APIError(resp.status, msg);
      }
      const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i).trim();
          buf = buf.slice(i + 1);
          if (!line) continue;
          const f = JSON.parse(line);
          // The coordinator ends the tail with a line saying why when the
          // session no longer holds.
          if (f.error !== undefined && f.id === undefined) throw new APIError(f.code === 'unauthorized' ? 401 : 403, f.error);
          onFlow(f);
        }
      }
      onEnd(null);
    } catch (e) {
      if (!ctl.signal.aborted) onEnd(e);
    }
  })();
  return () => ctl.abort();
}

// The most rows the flows page keeps; the live tail drops the oldest.
const maxFlowRows = 1000;

pages.flows = async (main) => {
  const nss = await api('GET', '/v1/admin/namespaces');
  const ns = h('select', { id: 'flows-namespace' }, h('option', { value: '' }, 'All namespaces'),
    (nss || []).map((n) => h('option', { value: n.name }, n.name)));
  const verdict = h('select', { id: 'flows-verdict' }, h('option', { value: '' }, 'Any verdict'),
    ['allowed', 'denied', 'would-deny'].map((v) => h('option', { value: v }, v)));
  const since = h('input', { id: 'flows-since', value: '1h', size: 8 });
  ns.value = app.params.get('namespace') || '';
  verdict.value = app.params.get('verdict') || '';
  if (app.params.get('since')) since.value = app.params.get('since');
  const exportLink = h('a', { id: 'flows-export', class: 'button secondary', download: 'latch-flows.jsonl' }, 'Export JSON lines');
  const tailBtn = h('button', { type: 'button', id: 'flows-tail', class: 'secondary', 'aria-pressed': 'false' }, 'Start live tail');
  const status = h('p', { id: 'flows-status', class: 'hint', 'aria-live': 'polite' });
  const tbody = h('tbody', { id: 'flows-body' });
  const tbl = h('table', { id: 'flows-table' },
    h('caption', { class: 'muted' }, 'Flow records, oldest first; each is one flow in one reporting interval of the node that reported it.'),
    h('thead', {}, h('tr', {}, ['Time', 'Source (node, address)', '', 'Destination:port/protocol (node, address)', 'Verdict', 'Packets', 'Bytes', 'Reported by']
      .map((x) => h('th', { scope: 'col' }, x)))), tbody);
  let lastID = 0;
  let stop = null;
  const query = () => {
    const q = new URLSearchParams();
    if (ns.value) q.set('namespace', ns.value);
    if (verdict.value) q.set('verdict', verdict.value);
    if (since.value.trim()) q.set('since', since.value.trim());
    return q;
  };
  const count = () => tbody.querySelectorAll('tr[data-flow-id]').length;
  const add = (f) => {
    if (f.id <= lastID) return;
    lastID = f.id;
    const empty = tbody.querySelector('tr.empty');
    if (empty) empty.remove();
    tbody.append(flowRow(f));
    while (count() > maxFlowRows) tbody.firstElementChild.remove();
  };
  const stopTail = (msg) => {
    if (stop) { stop(); stop = null; }
    tailBtn.textContent = 'Start live tail';
    tailBtn.setAttribute('aria-pressed', 'false');
    if (msg !== undefined) status.textContent = msg;
  };
  const startTail = () => {
    const q = query();
    if (lastID) q.set('after', String(lastID));
    stop = followFlows(q.toString(), (f) => { add(f); status.textContent = 'Live: ' + count() + ' flows shown, the newest at the bottom.'; },
      (err) => { stop = null; stopTail(err ? 'Live tail stopped: ' + err.message : 'Live tail ended: the coordinator closed the stream.'); });
    tailBtn.textContent = 'Stop live tail';
    tailBtn.setAttribute('aria-pressed', 'true');
    status.textContent = 'Live: new flows appear at the bottom as nodes report them.';
  };
  tailBtn.addEventListener('click', () => (stop ? stopTail('Live tail stopped.') : startTail()));
  app.cleanups.push(() => stopTail());
  const load = async () => {
    const wasLive = !!stop;
    stopTail();
    const q = query();
    const xq = new URLSearchParams(q);
    xq.set('format', 'jsonl');
    exportLink.href = '/v1/admin/flows?' + xq;
    q.set('limit', '500');
    const fs = await api('GET', '/v1/admin/flows?' + q);
    lastID = 0;
    tbody.replaceChildren();
    for (const f of fs) add(f);
    if (!fs.length) tbody.append(h('tr', { class: 'empty' }, h('td', { colspan: 8, class: 'muted' }, 'No flows match.')));
    status.textContent = fs.length + ' flows' + (fs.length === 500 ? ' (the newest 500; narrow the filters or export for all)' : '') + '.';
    if (wasLive) startTail();
  };
  const form = h('form', { class: 'card row', id: 'flows-filters', onsubmit: async (ev) => {
    ev.preventDefault();
    try { await load(); } catch (e) { status.textContent = ''; notice('Reading flows failed: ' + e.message, true); }
  } }, field('Namespace', ns, 'either end in it'), field('Verdict', verdict), field('Since', since, 'such as 10m, 24h, or an RFC 3339 time'),
  h('div', { class: 'field' }, h('button', { type: 'submit', id: 'flows-show' }, 'Show')),
  h('div', { class: 'field' }, tailBtn), h('div', { class: 'field' }, exportLink));
  main.append(h('h1', { tabindex: '-1' }, 'Flows'),
    h('p', { class: 'hint' }, 'What the nodes report: allowed flows, flows policy denied, and flows a namespace in monitor mode let through that enforce would drop (would-deny). The export downloads the flows the filters select (all of them, not only those shown) as JSON lines, like `latch flows --json`.'),
    form, status, tbl);
  await load();
};

// ---- suggestions

pages.suggest = async (main) => {
  const nss = (await api('GET', '/v1/admin/namespaces')) || [];
  const ns = h('select', { id: 'suggest-namespace' }, nss.map((n) => h('option', { value: n.name }, n.name + ' (' + n.mode + ')')));
  const wanted = app.params.get('namespace') || (nss.find((n) => n.mode === 'monitor') || nss[0] || {}).Name;
  if (wanted) ns.value = wanted;
  const since = h('input', { id: 'suggest-since', value: app.params.get('since') || '24h', size: 8 });
  const out = h('div', { id: 'suggest-result' });
  main.append(h('h1', { tabindex: '-1' }, 'Policy suggestions'), viewerNote(),
    h('p', { class: 'hint' }, 'The NetworkPolicy YAML that allows exactly the traffic observed in a namespace (flows allowed or would-deny; denied traffic is not learned), by workload labels and ports. Review and edit it, apply it, then switch the namespace to enforce: traffic the policies do not allow is then dropped.'));
  const show = async () => {
    out.replaceChildren(h('p', { class: 'muted' }, 'Reading the flows of ' + ns.value + '…'));
    let yml, cur;
    try {
      [yml, cur] = await Promise.all([
        api('GET', '/v1/admin/namespaces/' + encodeURIComponent(ns.value) + '/suggest?since=' + encodeURIComponent(since.value.trim() || '24h')),
        api('GET', '/v1/admin/namespaces')]);
    } catch (e) { out.replaceChildren(h('p', { class: 'error' }, e.message)); return; }
    const nsObj = (cur || []).find((n) => n.name === ns.value) || { name: ns.value, mode: 'enforce' };
    const modeBadge = h('span', { id: 'suggest-mode', class: 'badge ' + nsObj.mode }, nsObj.mode);
    const editor = h('textarea', { id: 'policy-yaml', spellcheck: 'false', autocomplete: 'off', wrap: 'off' });
    editor.value = typeof yml === 'string' ? yml : JSON.stringify(yml);
    const parts = [h('p', {}, 'Namespace ' + nsObj.name + ' is in ', modeBadge, ' mode.')];
    if (!isAdmin()) {
      editor.readOnly = true;
      parts.push(field('Suggested policy YAML (read only)', editor));
      out.replaceChildren(...parts);
      return;
    }
    let applied = false;
    const enforceHint = h('p', { class: 'hint', id: 'suggest-enforce-hint' });
    const hint = () => { enforceHint.textContent = nsObj.mode === 'enforce' ? 'Namespace ' + nsObj.name + ' enforces its policies: traffic they do not allow is dropped.' : 'Once the policies allow what the namespace needs, switch it to enforce.'; };
    hint();
    const enforce = h('button', { type: 'button', id: 'suggest-enforce', class: 'danger', disabled: nsObj.mode === 'enforce' },
      'Switch ' + nsObj.name + ' to enforce');
    enforce.addEventListener('click', async () => {
      const q = (applied ? '' : 'The suggested policy has not been applied from this page. ') +
        'Switch namespace ' + nsObj.name + ' to enforce? Traffic its policies do not allow is dropped from then on.';
      if (!await confirmDialog(q)) return;
      const r = await run('Switching ' + nsObj.name + ' to enforce', () => api('PUT', '/v1/admin/namespaces/' + encodeURIComponent(nsObj.name),
        { labels: nsObj.labels || {}, mode: 'enforce' }));
      nsObj.mode = r.mode;
      modeBadge.className = 'badge ' + r.mode;
      modeBadge.textContent = r.mode;
      enforce.disabled = r.mode === 'enforce';
      hint();
      for (const o of ns.options) if (o.value === nsObj.name) o.textContent = nsObj.name + ' (' + r.mode + ')';
    });
    parts.push(...policyEditor(editor, 'Suggested policy YAML', async () => { applied = true; }),
      h('h2', {}, 'Then enforce'),
      enforceHint,
      enforce);
    out.replaceChildren(...parts);
  };
  if (!nss.length) {
    main.append(h('p', { class: 'muted' }, 'No namespaces yet.'));
    return;
  }
  main.append(h('form', { class: 'card row', id: 'suggest-form', onsubmit: async (ev) => { ev.preventDefault(); await show(); } },
    field('Namespace', ns), field('Observed since', since, 'a duration such as 1h or 24h (a week: 168h), or an RFC 3339 time'),
    h('div', { class: 'field' }, h('button', { type: 'submit', id: 'suggest-go' }, 'Suggest'))), out);
  await show();
};

pages.tokens = async (main) => {
  const [toks, nss] = await Promise.all([api('GET', '/v1/admin/tokens'), api('GET', '/v1/admin/namespaces')]);
  main.append(h('h1', { tabindex: '-1' }, 'Join tokens'), viewerNote());
  if (isAdmin()) {
    const ns = h('input', { id: 'token-namespace', list: 'ns-list', value: 'default' });
    const dl = h('datalist', { id: 'ns-list' }, (nss || []).map((n) => h('option', { value: n.name })));
    const labels = h('input', { id: 'token-labels', placeholder: 'role=web,site=paris' });
    const workloads = h('textarea', { id: 'token-workloads', rows: 3, spellcheck: 'false', autocomplete: 'off',
      placeholder: 'namespace=prod,labels=app=web,name=web-*' });
    const uses = h('input', { id: 'token-uses', type: 'number', min: 1, value: '1' });
    const ttl = h('input', { id: 'token-ttl', value: '1h' });
    const out = h('div', { id: 'token-result', 'aria-live': 'polite' });
    const form = h('form', { class: 'card', onsubmit: async (ev) => {
      ev.preventDefault();
      let l;
      try { l = parseLabels(labels.value); } catch (e) { notice(e.message, true); return; }
      const r = await run('Creating a join token', () => api('POST', '/v1/admin/tokens', { namespace: ns.value.trim(), labels: l,
        workloads: nonEmptyLines(workloads.value), uses: parseInt(uses.value, 10) || 1, ttl: ttl.value.trim() }));
      const tokIn = h('input', { id: 'token-value', class: 'secret mono', readonly: true, value: r.token });
      const cmdIn = h('input', { id: 'token-install', class: 'secret mono', readonly: true,
        value: installCommand('https://' + window.location.host, r.token) });
      out.replaceChildren(h('p', { class: 'ok' }, 'Token ' + r.id + ' created; it is shown only now. Expires ' + fmtTime(r.expiresAt) + '.'),
        field('Join token', tokIn), copyButton(tokIn, 'Copy token'),
        field('Install one-liner (run on the new node)', cmdIn), copyButton(cmdIn, 'Copy command'));
      const list = await api('GET', '/v1/admin/tokens');
      main.querySelector('#token-list').replaceWith(tokenTable(list));
    } }, h('h2', {}, 'Create'), h('div', { class: 'row' }, field('Namespace', ns, 'nodes enrolling with it join this namespace'), dl,
      field('Labels', labels, 'key=value, comma separated; the nodes get exactly these'), field('Uses', uses), field('Valid for (TTL)', ttl, 'such as 30m, 24h; at most 720h (30 days)')),
    field('Workloads the nodes may host', workloads, 'one grant per line: namespace=NS[,labels=k=v;k=v][,name=PATTERN]; a workload must carry exactly the labels of a grant'),
    h('button', { type: 'submit', id: 'token-create' }, 'Create token'), out);
    main.append(form);
  }
  main.append(h('h2', {}, 'Tokens'), tokenTable(toks));
};

// fmtGrant writes a workload grant as `latch admin token create
// --workload` takes it.
function fmtGrant(g) {
  let s = 'namespace=' + g.namespace;
  const l = Object.keys(g.labels || {}).sort().map((k) => k + '=' + g.labels[k]);
  if (l.length) s += ',labels=' + l.join(';');
  if (g.name) s += ',name=' + g.name;
  return s;
}

function tokenTable(toks) {
  const t = table(['ID', 'Namespace', 'Labels', 'Workloads', 'Uses left', 'Expires', 'State', ''], (toks || []).map((t) => {
    const dead = t.revoked || t.usesLeft === 0 || new Date(t.expiresAt) < new Date();
    return [h('span', { class: 'mono' }, t.id), t.namespace || 'default', fmtLabels(t.labels),
      h('span', { class: 'mono' }, (t.workloads || []).map(fmtGrant).join(' | ') || '-'), String(t.usesLeft), fmtTime(t.expiresAt),
      t.revoked ? 'revoked' : t.usesLeft === 0 ? 'used up' : new Date(t.expiresAt) < new Date() ? 'expired' : 'valid',
      isAdmin() && !dead ? h('button', { type: 'button', class: 'danger', 'data-revoke-token': t.id, onclick: async () => {
        if (!await confirmDialog('Revoke join token ' + t.id + '? Nodes can no longer enroll with it.')) return;
        await run('Revoking token ' + t.id, () => api('DELETE', '/v1/admin/tokens/' + encodeURIComponent(t.id)));
        render();
      } }, 'Revoke') : ''];
  }));
  t.id = 'token-list';
  return t;
}

pages.access = async (main) => {
  const [users, toks] = await Promise.all([api('GET', '/v1/admin/users'), api('GET', '/v1/admin/apitokens')]);
  main.append(h('h1', { tabindex: '-1' }, 'Users & API tokens'), viewerNote(),
    h('p', { class: 'hint' }, 'Admins may change everything; viewers may only read. API tokens are for automation: send them as "Authorization: Bearer TOKEN" to /v1/admin/….'));
  main.append(h('h2', {}, 'Users'), table(['Name', 'Role', 'Created', ''], users.map((u) => [u.name, u.role, fmtTime(u.createdAt),
    isAdmin() && u.name !== app.me.name ? h('button', { type: 'button', class: 'danger', 'data-delete-user': u.name, onclick: async () => {
      if (!await confirmDialog('Delete user ' + u.name + '? Their sessions end at once.')) return;
      await run('Deleting user ' + u.name, () => api('DELETE', '/v1/admin/users/' + encodeURIComponent(u.name)));
      render();
    } }, 'Delete') : ''])));
  if (isAdmin()) {
    const name = h('input', { id: 'user-name', autocomplete: 'off' });
    const role = h('select', { id: 'user-role' }, h('option', { value: 'viewer' }, 'viewer'), h('option', { value: 'admin' }, 'admin'));
    const pw = h('input', { id: 'user-password', type: 'password', autocomplete: 'new-password' });
    const out = h('div', { id: 'user-result', 'aria-live': 'polite' });
    main.append(h('form', { class: 'card', onsubmit: async (ev) => {
      ev.preventDefault();
      const r = await run('Creating user ' + name.value, () => api('POST', '/v1/admin/users', { name: name.value.trim(), role: role.value, password: pw.value }));
      await render();
      if (r.password) {
        const p = h('input', { id: 'user-generated-password', class: 'secret mono', readonly: true, value: r.password });
        document.getElementById('user-result').replaceChildren(h('p', { class: 'ok' }, 'User ' + r.name + ' created with this password, shown only now:'), field('Password of ' + r.name, p), copyButton(p));
      }
    } }, h('h2', {}, 'Create a user'), h('div', { class: 'row' }, field('Name', name), field('Role', role),
      field('Password', pw, 'at least 12 characters; leave empty to have one generated')),
    h('button', { type: 'submit', id: 'user-create' }, 'Create user'), out));
  }
  main.append(h('h2', {}, 'API tokens'), table(['ID', 'Name', 'Role', 'Created by', 'Created', 'Expires', 'State', ''], toks.map((t) => [
    h('span', { class: 'mono' }, t.id), t.name, t.role, t.createdBy, fmtTime(t.createdAt), t.expiresAt.startsWith('0001-') ? 'never' : fmtTime(t.expiresAt),
    t.revoked ? 'revoked' : 'valid',
    isAdmin() && !t.revoked ? h('button', { type: 'button', class: 'danger', 'data-revoke-apitoken': t.id, onclick: async () => {
      if (!await confirmDialog('Revoke API token ' + t.name + '? Automation using it stops working.')) return;
      await run('Revoking API token ' + t.name, () => api('DELETE', '/v1/admin/apitokens/' + encodeURIComponent(t.id)));
      render();
    } }, 'Revoke') : ''])));
  if (isAdmin()) {
    const name = h('input', { id: 'apitoken-name', placeholder: 'ci-deploy' });
    const role = h('select', { id: 'apitoken-role' }, h('option', { value: 'viewer' }, 'viewer'), h('option', { value: 'admin' }, 'admin'));
    const ttl = h('input', { id: 'apitoken-ttl', placeholder: '2160h' });
    const out = h('div', { id: 'apitoken-result', 'aria-live': 'polite' });
    main.append(h('form', { class: 'card', onsubmit: async (ev) => {
      ev.preventDefault();
      const r = await run('Creating API token', () => api('POST', '/v1/admin/apitokens', { name: name.value.trim(), role: role.value, ttl: ttl.value.trim() }));
      await render();
      const t = h('input', { id: 'apitoken-value', class: 'secret mono', readonly: true, value: r.token });
      document.getElementById('apitoken-result').replaceChildren(h('p', { class: 'ok' }, 'API token created; it is shown only now:'), field('API token', t), copyButton(t));
    } }, h('h2', {}, 'Create an API token'), h('div', { class: 'row' }, field('Name', name, 'what uses it'), field('Role', role),
      field('Valid for', ttl, 'empty: 2160h (90 days); at most 8760h (365 days)')), h('button', { type: 'submit', id: 'apitoken-create' }, 'Create API token'), out));
  }
};

pages.audit = async (main) => {
  const entries = await api('GET', '/v1/admin/audit');
  main.append(h('h1', { tabindex: '-1' }, 'Audit log'), h('p', { class: 'hint' }, 'The newest 200 changes: who, what, when, and the change itself.'));
  main.append(table(['When', 'Who', 'What', 'Object', 'Change'], (entries || []).map((e) => {
    let d = null;
    try { d = JSON.parse(e.detail); } catch (x) { d = e.detail; }
    let body;
    if (d && typeof d === 'object' && ('before' in d || 'after' in d)) {
      const pretty = (v) => v === undefined ? '' : typeof v === 'object' && v !== null && Object.values(v).every((x) => typeof x === 'string')
        ? Object.entries(v).map(([k, x]) => '# ' + k + '\n' + x).join('\n') : JSON.stringify(v, null, 2);
      body = renderDiff(pretty(d.before), pretty(d.after));
    } else if (d === null || d === 'null') {
      body = h('span', { class: 'muted' }, '—');
    } else {
      body = h('pre', { class: 'diff' }, JSON.stringify(d, null, 2));
    }
    return [fmtTime(e.time), e.actor, e.action, e.object, h('details', {}, h('summary', {}, 'show'), body)];
  })));
};

// ---- routing and live updates

async function render() {
  const seq = ++app.renderSeq;
  // A page's live parts (the flows tail) stop when another render begins.
  for (const stop of app.cleanups.splice(0)) stop();
  // #page or #page?key=value: a page and its parameters.
  const [name, qs] = (window.location.hash || '#overview').slice(1).split('?');
  app.params = new URLSearchParams(qs || '');
  app.page = pages[name] ? name : 'overview';
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.getAttribute('href') === '#' + app.page) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  // A group's button shows that it holds the current page.
  for (const b of document.querySelectorAll('#nav button[aria-controls]')) {
    if (document.getElementById(b.getAttribute('aria-controls')).querySelector('a[aria-current]')) b.dataset.current = 'true'; else delete b.dataset.current;
  }
  const main = document.createElement('main');
  main.id = 'main';
  main.tabIndex = -1;
  main.dataset.page = app.page;
  try {
    await pages[app.page](main);
  } catch (e) {
    if (e.status === 401) return;
    main.append(h('p', { class: 'error' }, 'Could not load this page: ' + e.message));
  }
  if (seq !== app.renderSeq) return; // a newer render won
  const focusKey = focusSelector(document.activeElement);
  document.getElementById('main').replaceWith(main);
  // A live redraw keeps the keyboard focus on the same control.
  const again = focusKey && main.querySelector(focusKey);
  if (again) again.focus();
  document.title = (main.querySelector('h1') || {}).textContent + ' · Latch console';
}

// focusSelector names a focused control of the page so that a redraw can
// focus its successor: by id, or by its data-* or aria-label attribute.
function focusSelector(el) {
  if (!el || !el.closest || !el.closest('main')) return '';
  if (el.id && el.id !== 'main') return '#' + CSS.escape(el.id);
  for (const a of el.attributes) {
    if (a.name.startsWith('data-') || a.name === 'aria-label') return '[' + a.name + '="' + CSS.escape(a.value) + '"]';
  }
  return '';
}

// setupNav makes the header's page groups disclosure menus: a button
// (aria-expanded) shows or hides its list of links. One is open at a time;
// choosing a page, Escape (which gives the focus back to the button),
// moving the focus out of the group or a click elsewhere closes it.
function setupNav() {
  const buttons = Array.from(document.querySelectorAll('#nav button[aria-controls]'));
  const menuOf = (b) => document.getElementById(b.getAttribute('aria-controls'));
  const setOpen = (b, open) => { b.setAttribute('aria-expanded', String(open)); menuOf(b).hidden = !open; };
  for (const b of buttons) {
    const group = b.parentElement;
    b.addEventListener('click', () => {
      const open = b.getAttribute('aria-expanded') !== 'true';
      for (const o of buttons) setOpen(o, false);
      setOpen(b, open);
    });
    menuOf(b).addEventListener('click', (ev) => { if (ev.target.closest('a')) setOpen(b, false); });
    group.addEventListener('keydown', (ev) => {
      if (ev.key === 'Escape' && b.getAttribute('aria-expanded') === 'true') { ev.preventDefault(); setOpen(b, false); b.focus(); }
    });
    // Focus moving to a control outside the group closes it (a click on a
    // link that does not take the focus, as in Safari, must not).
    group.addEventListener('focusout', (ev) => { if (ev.relatedTarget && !group.contains(ev.relatedTarget)) setOpen(b, false); });
  }
  document.addEventListener('click', (ev) => { if (!ev.target.closest('#nav')) for (const b of buttons) setOpen(b, false); });
}

// Pages redrawn on node and route events: those without forms a redraw
// would reset.
const livePages = new Set(['overview', 'nodes', 'workloads', 'spiffe', 'routes']);

function connectEvents() {
  const live = document.getElementById('live');
  const es = new EventSource('/v1/admin/events');
  const refresh = () => {
    if (!livePages.has(app.page) || document.querySelector('dialog[open]')) return;
    if (document.activeElement && ['INPUT', 'SELECT', 'TEXTAREA'].includes(document.activeElement.tagName)) return;
    render();
  };
  let opened = false;
  es.addEventListener('open', () => {
    live.classList.add('on');
    live.title = 'Live updates: connected';
    // After a reconnect, events may have been missed: reload the page's data.
    if (opened) refresh();
    opened = true;
  });
  es.addEventListener('error', () => { live.classList.remove('on'); live.title = 'Live updates: reconnecting'; });
  es.addEventListener('resync', refresh);
  // The coordinator ends the stream when the session no longer holds
  // (logged out, user deleted, session expired).
  es.addEventListener('end', (ev) => {
    es.close();
    live.classList.remove('on');
    let e = {};
    try { e = JSON.parse(ev.data); } catch (err) { /* not JSON */ }
    live.title = 'Live updates: ended';
    if (e.code === 'unauthorized') window.location.assign('/console/login');
    else notice('Live updates ended: ' + (e.error || 'the coordinator closed them') + '.');
  });
  es.addEventListener('change', (ev) => {
    const e = JSON.parse(ev.data);
    if (e.action === 'route.approve' || e.action === 'route.reject') {
      notice('Route ' + e.object + (e.action === 'route.approve' ? ' approved' : ' rejected') + (e.actor ? ' by ' + e.actor : '') + ' (' + new Date(e.time).toLocaleTimeString() + ').');
      refresh();
      return;
    }
    if (!e.action.startsWith('node.')) return;
    const what = { 'node.enroll': 'enrolled', 'node.register': 'registered', 'node.connect': 'connected', 'node.disconnect': 'disconnected', 'node.delete': 'deleted', 'node.renew': 'renewed its certificate',
      'node.spiffe.pending': 'presented an SVID from SPIRE that matches no mapping: it waits for approval', 'node.spiffe.admit': 'was admitted (SPIRE)', 'node.spiffe.reject': 'was rejected (SPIRE)' }[e.action] || e.action;
    notice('Node ' + e.object + ' ' + what + ' (' + new Date(e.time).toLocaleTimeString() + ').');
    refresh();
  });
}

async function start() {
  try {
    app.me = await api('GET', '/v1/admin/whoami');
  } catch (e) {
    return;
  }
  document.getElementById('whoami').textContent = app.me.name + ' (' + app.me.role + ')';
  document.body.dataset.role = app.me.role;
  document.getElementById('logout').addEventListener('click', async () => {
    try { await api('POST', '/console/logout'); } finally { window.location.assign('/console/login'); }
  });
  setupNav();
  window.addEventListener('hashchange', async () => { await render(); document.getElementById('main').focus(); });
  await render();
  connectEvents();
}

start();

// installCommand is the install one-liner for a join token, the command
// of README ("Install on a server or laptop") on one line. The
// coordinator's certificate comes from its own CA, which the token pins
// (its last part is the SHA-256 of the CA's public key): fetch the CA
// certificate, keep exactly one certificate of it (openssl x509; curl
// would trust every certificate in a CA file), check it against the token,
// then fetch the script over TLS verified with that certificate alone. The
// token reaches the script in its environment, never on a command line
// (ps), and nothing is written to /tmp.
function installCommand(coord, token) {
  return '(export LATCH_TOKEN=' + token + ' COORD=' + coord + '; ' +
    'ca=$(curl -fsSk "$COORD/ca.pem" | openssl x509) && ' +
    '[ "$(echo "$ca" | openssl x509 -noout -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256 | awk \'{print $NF}\')" = "${LATCH_TOKEN##*.}" ] && ' +
    'echo "$ca" | curl -fsS --cacert /dev/stdin "$COORD/install.sh" | sudo --preserve-env=LATCH_TOKEN sh)';
}

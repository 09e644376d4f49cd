// Slither dashboard: polls the engine's state JSON once a second and
// renders it. Every string that comes from the JSON reaches the page as a
// text node or an attribute value set through the DOM, never as markup.
(function () {
  'use strict';

  var token = new URLSearchParams(location.search).get('token');
  // The page is served at .../debug/slither/; the state sits below it and
  // the metrics beside debug/. Computed from the path so any mount prefix,
  // with or without the trailing slash, works.
  var base = location.pathname.replace(/\/+$/, '');
  var stateURL = base + '/state';
  var metricsURL = base.replace(/\/debug\/slither$/, '') + '/metrics';
  var interval = 1000;

  // ---- DOM helpers ----

  function add(n, kids) {
    if (kids === null || kids === undefined || kids === false) return n;
    if (!Array.isArray(kids)) kids = [kids];
    kids.forEach(function (k) {
      if (k === null || k === undefined || k === false) return;
      if (Array.isArray(k)) add(n, k);
      else n.appendChild(typeof k === 'object' ? k : document.createTextNode(String(k)));
    });
    return n;
  }

  // el(tag, attrs, kids): attrs are set with setAttribute (values are
  // never parsed as HTML); kids are nodes or strings (made text nodes).
  function el(tag, attrs, kids) {
    var n = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (attrs[k] !== null && attrs[k] !== undefined) n.setAttribute(k, String(attrs[k]));
      });
    }
    return add(n, kids);
  }

  function td(testid, value, cls) {
    return el('td', { 'data-testid': testid, 'class': cls }, value);
  }

  function table(cls, head, rows, empty) {
    if (!rows.length) return el('p', { 'class': 'empty' }, empty);
    return el('table', { 'class': cls }, [
      el('thead', null, el('tr', null, head.map(function (h) {
        return el('th', typeof h === 'string' ? null : { 'class': h[1] }, typeof h === 'string' ? h : h[0]);
      }))),
      el('tbody', null, rows)
    ]);
  }

  // bar draws frac (0..1) as a filled bar; warn/full colour it.
  function bar(frac, testid) {
    var f = isFinite(frac) ? Math.max(0, Math.min(1, frac)) : 0;
    var fill = el('span', { 'class': 'fill' });
    fill.style.width = (f * 100).toFixed(1) + '%';
    var cls = 'bar' + (f >= 1 ? ' full' : f >= 0.75 ? ' warn' : '');
    return el('span', { 'class': cls, 'data-testid': testid, 'title': pct(f) }, fill);
  }

  // ---- formatting ----

  function num(n) { return Number(n || 0).toLocaleString('en-US'); }
  function pct(f) { return (100 * (f || 0)).toFixed(0) + '%'; }
  function two(n) { return (n < 10 ? '0' : '') + n; }

  function clock(t) {
    var d = new Date(t);
    if (isNaN(d.getTime())) return '—';
    return two(d.getHours()) + ':' + two(d.getMinutes()) + ':' + two(d.getSeconds());
  }

  function dur(s) {
    s = Number(s || 0);
    if (s < 1) return Math.round(s * 1000) + ' ms';
    if (s < 60) return s.toFixed(1) + ' s';
    var m = Math.floor(s / 60);
    if (m < 60) return m + 'm' + two(Math.floor(s % 60)) + 's';
    return Math.floor(m / 60) + 'h' + two(m % 60) + 'm';
  }

  function bytes(b) {
    if (!b) return '—';
    if (b < 1024 * 1024) return (b / 1024).toFixed(0) + ' KiB';
    if (b < 1024 * 1024 * 1024) return (b / 1048576).toFixed(1) + ' MiB';
    return (b / 1073741824).toFixed(2) + ' GiB';
  }

  function list(a) { return Array.isArray(a) ? a : []; }

  // ---- sections ----
  // Each section re-renders only when its slice of the state changed, so
  // a traceback being selected or read is not replaced every second.

  var last = {};
  function section(id, data, render) {
    var key = JSON.stringify(data);
    if (last[id] === key) return;
    last[id] = key;
    document.getElementById(id).replaceChildren(render(data));
  }

  function card(testid, label, value, cls) {
    return el('div', { 'class': 'card' + (cls ? ' ' + cls : '') }, [
      el('div', { 'class': 'value', 'data-testid': testid }, value),
      el('div', { 'class': 'label' }, label)
    ]);
  }

  function renderTotals(d) {
    var t = d.totals || {};
    var f = document.createDocumentFragment();
    add(f, [
      card('total-in-flight', 'batches in flight', num(t.in_flight)),
      card('total-queued', 'items queued', num(t.queued_items), t.queued_items > 0 ? 'warn' : ''),
      card('total-batches-ok', 'batches ok', num(t.batches_ok)),
      card('total-batches-failed', 'batches failed', num(t.batches_failed), t.batches_failed > 0 ? 'bad' : ''),
      card('total-items-ok', 'items ok', num(t.items_ok)),
      card('total-items-failed', 'items failed', num(t.items_failed), t.items_failed > 0 ? 'bad' : ''),
      card('total-items-skipped', 'items skipped', num(t.items_skipped), t.items_skipped > 0 ? 'warn' : ''),
      card('total-items-routed', 'items routed', num(t.items_routed), t.items_routed > 0 ? 'warn' : ''),
      card('total-items-cancelled', 'items cancelled', num(t.items_cancelled), t.items_cancelled > 0 ? 'warn' : ''),
      card('total-retries', 'retries', num(t.retries), t.retries > 0 ? 'warn' : ''),
      card('uptime', 'monitor uptime', dur((new Date(d.time) - new Date(d.started)) / 1000))
    ]);
    return f;
  }

  function renderGIL(g) {
    if (!g.embedded) {
      return el('p', { 'class': 'empty', 'data-testid': 'gil-state' },
        'No embedded interpreter in this process: Python runs in process pools only.');
    }
    var changes = list(g.changes);
    var culprit = null;
    changes.forEach(function (c) { if (c.enabled && c.module) culprit = c; });
    var head = el('p', { 'class': 'gil' }, [
      el('span', { 'class': 'badge ' + (g.enabled ? 'bad' : 'ok'), 'data-testid': 'gil-state' },
        g.enabled ? 'GIL enabled' : 'GIL disabled'),
      ' ',
      el('span', { 'data-testid': 'gil-build' },
        g.free_threaded_build ? 'free-threaded build' : 'not a free-threaded build (the GIL is always on)'),
      g.enabled && culprit ? [' · re-enabled by importing ',
        el('code', { 'data-testid': 'gil-module' }, culprit.module),
        culprit.during ? ' (during a batch of ' + culprit.during + ')' : '',
        ' at ' + clock(culprit.at)] : null
    ]);
    var rows = changes.slice().reverse().map(function (c) {
      return el('tr', { 'data-testid': 'gil-change' }, [
        td('gil-change-at', clock(c.at)),
        td('gil-change-state', c.enabled ? 'enabled' : 'disabled', c.enabled ? 'bad' : 'ok'),
        td('gil-change-module', c.module || '—', 'mono'),
        td('gil-change-during', c.during || '—', 'mono')
      ]);
    });
    var f = document.createDocumentFragment();
    add(f, [head, table('gil-changes', ['at', 'GIL', 'turned on by import of', 'during batch of'], rows,
      'No GIL changes seen since the monitor started.')]);
    return f;
  }

  function renderPool(p) {
    var workers = list(p.workers).map(function (w) {
      // A thread worker is named by its OS thread (its pid is this
      // process's); a process worker by its pid (0 while it restarts).
      var who = p.kind === 'thread' ? (w.thread ? 'tid ' + w.thread : '—') : (w.pid ? 'pid ' + w.pid : '—');
      return el('tr', { 'data-testid': 'worker', 'data-id': w.id }, [
        td('worker-id', w.id, 'num'),
        td('worker-state', el('span', { 'class': 'state ' + w.state }, w.state || '?')),
        td('worker-os', who, 'mono'),
        td('worker-current', w.current || '—', 'mono'),
        td('worker-running', w.current ? dur(w.running_s) : '', 'num'),
        td('worker-calls', num(w.calls), 'num'),
        td('worker-items', num(w.items), 'num'),
        td('worker-errors', num(w.errors), 'num' + (w.errors > 0 ? ' bad' : '')),
        td('worker-restarts', num(w.restarts), 'num' + (w.restarts > 0 ? ' warn' : '')),
        td('worker-rss', p.kind === 'process' ? bytes(w.rss_bytes) : '', 'num'),
        td('worker-busy', dur(w.busy_s), 'num')
      ]);
    });
    return el('div', { 'class': 'pool', 'data-testid': 'pool', 'data-name': p.name }, [
      el('div', { 'class': 'pool-head' }, [
        el('h3', { 'data-testid': 'pool-name' }, p.name),
        el('span', { 'class': 'badge', 'data-testid': 'pool-kind' }, p.kind),
        el('span', { 'class': 'stat' }, ['busy ', el('b', { 'data-testid': 'pool-busy' }, p.busy + ' / ' + p.capacity)]),
        // What the pool can really run at once: 1 for the embedded pool
        // while the GIL is on, and never more than the usable cores.
        el('span', { 'class': 'stat' + (p.effective_capacity < p.capacity ? ' warn' : ''),
          'title': 'batches it can really run in parallel now (the GIL, the usable cores)' },
          ['effective ', el('b', { 'data-testid': 'pool-effective' }, num(p.effective_capacity))]),
        bar(p.saturation, 'pool-saturation-bar'),
        el('span', { 'class': 'stat', 'data-testid': 'pool-saturation' }, pct(p.saturation) + ' saturated'),
        el('span', { 'class': 'stat' + (p.waiting > 0 ? ' warn' : '') }, ['queue ', el('b', { 'data-testid': 'pool-waiting' }, num(p.waiting))]),
        el('span', { 'class': 'stat' }, ['calls ', el('b', { 'data-testid': 'pool-calls' }, num(p.calls))]),
        el('span', { 'class': 'stat' }, ['items ', el('b', { 'data-testid': 'pool-items' }, num(p.items))]),
        el('span', { 'class': 'stat' + (p.errors > 0 ? ' bad' : '') }, ['errors ', el('b', { 'data-testid': 'pool-errors' }, num(p.errors))]),
        el('span', { 'class': 'stat' + (p.restarts > 0 ? ' warn' : '') }, ['restarts ', el('b', { 'data-testid': 'pool-restarts' }, num(p.restarts))])
      ]),
      table('workers', [['#', 'num'], 'state', p.kind === 'process' ? 'pid' : 'thread', 'running now',
        ['for', 'num'], ['calls', 'num'], ['items', 'num'], ['errors', 'num'], ['restarts', 'num'],
        [p.kind === 'process' ? 'RSS' : '', 'num'], ['busy time', 'num']], workers, 'No workers.')
    ]);
  }

  function renderPools(pools) {
    if (!pools.length) return el('p', { 'class': 'empty' }, 'No pools.');
    var f = document.createDocumentFragment();
    add(f, pools.map(renderPool));
    return f;
  }

  function renderDispatches(ds) {
    var rows = ds.map(function (d) {
      var limit = d.max_in_flight || 0;
      return el('tr', { 'data-testid': 'dispatch', 'data-name': d.name }, [
        td('dispatch-name', d.name, 'mono'),
        td('dispatch-pool', d.pool || '—'),
        td('dispatch-function', d.function || '—', 'mono'),
        td('dispatch-runs', num(d.runs), 'num'),
        td('dispatch-inflight', num(d.in_flight) + ' / ' + (limit ? num(limit) : '—'), 'num'),
        el('td', null, bar(limit ? d.in_flight / limit : 0, 'dispatch-inflight-bar')),
        td('dispatch-queued', num(d.queued_items), 'num' + (d.queued_items > 0 ? ' warn' : '')),
        td('dispatch-batches-ok', num(d.batches_ok), 'num'),
        td('dispatch-batches-failed', num(d.batches_failed), 'num' + (d.batches_failed > 0 ? ' bad' : '')),
        td('dispatch-retries', num(d.retries), 'num' + (d.retries > 0 ? ' warn' : '')),
        td('dispatch-items-ok', num(d.items_ok), 'num'),
        td('dispatch-items-failed', num(d.items_failed), 'num' + (d.items_failed > 0 ? ' bad' : '')),
        td('dispatch-items-skipped', num(d.items_skipped), 'num' + (d.items_skipped > 0 ? ' warn' : '')),
        td('dispatch-items-routed', num(d.items_routed), 'num' + (d.items_routed > 0 ? ' warn' : '')),
        td('dispatch-items-cancelled', num(d.items_cancelled), 'num' + (d.items_cancelled > 0 ? ' warn' : ''))
      ]);
    });
    // Batches count submissions (a retried batch counts each attempt);
    // items count once, failed, skipped, routed and cancelled when their
    // run ends.
    return table('dispatches', ['dispatch', 'pool', 'function', ['runs now', 'num'], ['in flight / limit', 'num'], '',
      ['queued', 'num'], ['batches ok', 'num'], ['batches failed', 'num'], ['retries', 'num'], ['items ok', 'num'],
      ['items failed', 'num'], ['skipped', 'num'], ['routed', 'num'], ['cancelled', 'num']], rows, 'No dispatches yet.');
  }

  function renderRoutes(d) {
    if (!d.routes.length && !d.recent.length) return el('p', { 'class': 'empty' }, 'No routing decisions yet.');
    var counts = d.routes.map(function (r) {
      return el('tr', { 'data-testid': 'route-count', 'data-route': r.route, 'data-class': r.class }, [
        td('route-count-route', r.route),
        td('route-count-class', r.class, 'mono'),
        td('route-count-n', num(r.count), 'num')
      ]);
    });
    var recent = d.recent.map(function (r) {
      return el('tr', { 'data-testid': 'route-decision' }, [
        td('route-at', clock(r.at)),
        td('route-function', r.function, 'mono'),
        td('route-route', r.route),
        td('route-class', r.class, 'mono'),
        td('route-reason', [r.reason, r.warning ? el('div', { 'class': 'warn' }, '⚠ ' + r.warning) : null]),
        td('route-n', '×' + num(r.count), 'num')
      ]);
    });
    var f = document.createDocumentFragment();
    add(f, [
      el('div', { 'class': 'split' }, [
        el('div', null, [el('h4', null, 'Decisions by route and reason'),
          table('route-counts', ['route', 'reason class', ['batches', 'num']], counts, 'No routing decisions yet.')]),
        el('div', { 'class': 'grow' }, [el('h4', null, 'Latest decisions'),
          table('route-decisions', ['last at', 'function', 'route', 'class', 'reason', ['seen', 'num']], recent,
            'No routing decisions yet.')])
      ])
    ]);
    return f;
  }

  function renderPipes(ps) {
    if (!ps.length) return el('p', { 'class': 'empty' }, 'No pipelines have run.');
    var f = document.createDocumentFragment();
    add(f, ps.map(function (p) {
      var stages = list(p.stages).map(function (s, i) {
        return el('tr', { 'data-testid': 'stage', 'data-name': s.name }, [
          td('stage-index', i + 1, 'num'),
          td('stage-name', s.name, 'mono'),
          td('stage-kind', s.kind),
          td('stage-in', num(s.in), 'num'),
          td('stage-out', num(s.out), 'num'),
          td('stage-drop', s.in > s.out ? num(s.in - s.out) : '', 'num muted')
        ]);
      });
      return el('div', { 'class': 'pipe', 'data-testid': 'pipe', 'data-name': p.name }, [
        el('div', { 'class': 'pool-head' }, [
          el('h3', { 'data-testid': 'pipe-name' }, p.name),
          el('span', { 'class': 'stat' }, ['runs ', el('b', { 'data-testid': 'pipe-runs' }, num(p.runs))]),
          el('span', { 'class': 'stat' }, ['running ', el('b', { 'data-testid': 'pipe-running' }, num(p.running))]),
          el('span', { 'class': 'stat' + (p.failed > 0 ? ' bad' : '') }, ['failed ', el('b', { 'data-testid': 'pipe-failed' }, num(p.failed))])
        ]),
        table('stages', [['#', 'num'], 'stage', 'kind', ['items in', 'num'], ['items out', 'num'], ['not passed on', 'num']],
          stages, 'No stages.')
      ]);
    }));
    return f;
  }

  function renderStores(ss) {
    var rows = ss.map(function (s) {
      var tables = list(s.tables).map(function (t) {
        return el('span', { 'class': 'chip', 'data-testid': 'store-table', 'data-name': t.name },
          [el('span', { 'class': 'mono' }, t.name), ' ', el('b', { 'data-testid': 'store-table-rows' }, num(t.rows)), ' rows']);
      });
      return el('tr', { 'data-testid': 'store', 'data-name': s.name }, [
        td('store-name', s.name, 'mono'),
        td('store-tables', tables.length ? tables : '—'),
        td('store-writes', num(s.writes), 'num'),
        td('store-reloads', num(s.reloads), 'num'),
        td('store-views', num(s.view_calls), 'num')
      ]);
    });
    return table('stores', ['store', 'tables', ['writes', 'num'], ['reloads', 'num'], ['view calls', 'num']], rows,
      'No stores.');
  }

  function renderErrors(es) {
    if (!es.length) return el('p', { 'class': 'empty', 'data-testid': 'no-errors' }, 'No errors since the monitor started.');
    var f = document.createDocumentFragment();
    add(f, es.map(function (e) {
      return el('div', { 'class': 'error', 'data-testid': 'error' }, [
        el('div', { 'class': 'error-head' }, [
          el('span', { 'class': 'muted', 'data-testid': 'error-at' }, clock(e.at)),
          el('span', { 'class': 'mono', 'data-testid': 'error-source' }, e.source),
          e.function && e.function !== e.source ?
            el('span', { 'class': 'mono', 'data-testid': 'error-function' }, e.function) : null,
          e.pool ? el('span', { 'class': 'badge', 'data-testid': 'error-pool' }, e.pool) : null,
          e.count > 1 ? el('span', { 'class': 'badge warn', 'data-testid': 'error-count' }, '×' + num(e.count)) : null
        ]),
        el('div', { 'class': 'error-msg' }, [
          e.type ? el('b', { 'data-testid': 'error-type' }, e.type) : null,
          e.type ? ': ' : null,
          el('span', { 'data-testid': 'error-message' }, e.message)
        ]),
        // The whole Go error chain, when the message is Python's own.
        e.error ? el('div', { 'class': 'error-chain', 'data-testid': 'error-chain' }, e.error) : null,
        e.traceback ? el('pre', { 'class': 'traceback', 'data-testid': 'error-traceback' }, e.traceback) : null
      ]);
    }));
    return f;
  }

  // ---- polling ----

  function render(st) {
    document.getElementById('who').textContent =
      (st.host || '?') + ' · pid ' + st.pid + (st.version ? ' · ' + st.version : '');
    section('totals', { totals: st.totals, time: st.time, started: st.started }, renderTotals);
    section('gil', st.gil || {}, renderGIL);
    section('pools', list(st.pools), renderPools);
    section('dispatches', list(st.dispatches), renderDispatches);
    section('routes', { routes: list(st.routes), recent: list(st.recent_routes) }, renderRoutes);
    section('pipes', list(st.pipes), renderPipes);
    section('stores', list(st.stores), renderStores);
    section('errors', list(st.errors), renderErrors);
    document.getElementById('updated').textContent = 'updated ' + clock(st.time);
  }

  function status(ok, text) {
    var s = document.getElementById('status');
    s.textContent = text;
    s.className = 'conn ' + (ok ? 'ok' : 'bad');
    document.body.classList.toggle('stale', !ok);
  }

  function poll() {
    var headers = { 'Accept': 'application/json' };
    if (token) headers['Authorization'] = 'Bearer ' + token;
    // A request that hangs must not leave an old view marked live.
    var abort = new AbortController();
    var timer = setTimeout(function () { abort.abort(new Error('no answer in 5 s')); }, 5000);
    fetch(stateURL, { headers: headers, cache: 'no-store', credentials: 'same-origin', signal: abort.signal })
      .then(function (r) {
        if (!r.ok) throw new Error('HTTP ' + r.status + (r.statusText ? ' ' + r.statusText : ''));
        return r.json();
      })
      .then(function (st) {
        render(st);
        status(true, 'live');
      })
      .catch(function (err) {
        // Keep the last good view on screen, marked stale.
        status(false, 'cannot read state: ' + err.message);
      })
      .then(function () {
        clearTimeout(timer);
        setTimeout(poll, interval);
      });
  }

  var m = document.getElementById('metrics-link');
  m.setAttribute('href', metricsURL + (token ? '?token=' + encodeURIComponent(token) : ''));
  poll();
})();

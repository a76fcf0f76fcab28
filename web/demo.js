// The tus-js-client demo page of uploadgate. Every file needs a slot: the URL
// pasted into the form, or one minted by the gateway (POST slot). The slot URL
// is the tus endpoint; the upload URL tus-js-client gets back (Location) is
// kept by tus-js-client under its fingerprint in localStorage. The fingerprint
// includes the endpoint, which differs per slot, so the page keeps the slot of
// each file in localStorage too: choosing the same file again after a reload
// finds the same slot, hence the same fingerprint, and resumes.
'use strict';

(function () {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const MiB = 1024 * 1024;
  const chunkSize = Number(params.get('chunkSize')) || 8 * MiB;
  // Retry for about a minute and a half before giving up; an offline browser
  // is waited for separately (see onError).
  const retryDelays = [0, 1000, 2000, 3000, 5000, 5000, 10000, 10000, 20000, 30000];

  // What the page did, for people (the list) and for tests (this object).
  const state = { posts: 0, patches: 0, heads: 0, requests: [], uploads: [] };
  window.uploadgateDemo = state;

  function slotKey(file) {
    return 'uploadgate-demo-slot::' + [file.name, file.type, file.size, file.lastModified].join('::');
  }

  // slotFor returns {put, get} for file: the one stored for it, the pasted
  // one, or a new one from the gateway.
  async function slotFor(file, pasted) {
    const stored = localStorage.getItem(slotKey(file));
    if (stored) {
      return JSON.parse(stored);
    }
    let slot;
    if (pasted) {
      const u = new URL(pasted, location.href);
      const get = new URL(u.href);
      get.search = '';
      slot = { put: u.href, get: get.href };
    } else {
      const res = await fetch('slot', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ name: file.name, size: file.size, type: file.type }),
      });
      if (!res.ok) {
        throw new Error('the gateway minted no slot: ' + res.status + ' ' + (await res.text()).trim());
      }
      const s = await res.json();
      slot = { put: s.putURL, get: s.getURL };
    }
    localStorage.setItem(slotKey(file), JSON.stringify(slot));
    return slot;
  }

  function formatBytes(n) {
    if (n >= MiB) return (n / MiB).toFixed(1) + ' MiB';
    if (n >= 1024) return (n / 1024).toFixed(1) + ' KiB';
    return n + ' B';
  }

  function whenOnline() {
    if (navigator.onLine) return Promise.resolve();
    return new Promise((resolve) => window.addEventListener('online', resolve, { once: true }));
  }

  function showNetwork() {
    const el = $('network');
    el.textContent = navigator.onLine ? 'online' : 'offline: uploads continue when the network is back';
    el.className = navigator.onLine ? '' : 'offline';
  }
  window.addEventListener('online', showNetwork);
  window.addEventListener('offline', showNetwork);
  showNetwork();

  function row(file) {
    const li = document.createElement('li');
    const name = document.createElement('strong');
    name.textContent = file.name + ' ';
    const bar = document.createElement('progress');
    bar.max = file.size;
    bar.value = 0;
    const text = document.createElement('span');
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = 'Pause';
    const link = document.createElement('a');
    li.append(name, bar, ' ', text, ' ', button, ' ', link);
    $('uploads').append(li);
    return { li, bar, text, button, link };
  }

  async function uploadFile(file, pasted) {
    const ui = row(file);
    const info = {
      name: file.name, size: file.size, bytes: 0, url: '', getURL: '',
      firstPatchOffset: null, resumed: false, done: false, error: '',
    };
    state.uploads.push(info);
    let slot;
    try {
      slot = await slotFor(file, pasted);
    } catch (err) {
      info.error = String(err.message || err);
      ui.text.textContent = info.error;
      ui.text.className = 'error';
      return;
    }
    let paused = false;
    let last = { t: performance.now(), bytes: 0 };
    let speed = 0;
    const upload = new tus.Upload(file, {
      endpoint: slot.put,
      chunkSize,
      retryDelays,
      removeFingerprintOnSuccess: true,
      metadata: { filename: file.name, filetype: file.type || 'application/octet-stream' },
      // Retry whatever may pass by itself, also while the browser reports
      // being offline (tus-js-client's default gives up then).
      onShouldRetry(err) {
        const status = err.originalResponse ? err.originalResponse.getStatus() : 0;
        return status === 0 || status === 409 || status === 423 || status === 429 || status >= 500;
      },
      onBeforeRequest(req) {
        const m = req.getMethod();
        state.requests.push(m + ' ' + (req.getHeader('Upload-Offset') || ''));
        if (m === 'POST') state.posts++;
        if (m === 'HEAD') state.heads++;
        if (m === 'PATCH') {
          state.patches++;
          if (info.firstPatchOffset === null) info.firstPatchOffset = Number(req.getHeader('Upload-Offset'));
        }
      },
      onUploadUrlAvailable() {
        info.url = upload.url;
      },
      onProgress(sent, total) {
        info.bytes = sent;
        const now = performance.now();
        if (now - last.t >= 500) {
          speed = ((sent - last.bytes) * 1000) / (now - last.t);
          last = { t: now, bytes: sent };
        }
        ui.bar.value = sent;
        ui.text.textContent = formatBytes(sent) + ' of ' + formatBytes(total) + ', ' + formatBytes(Math.max(speed, 0)) + '/s';
      },
      onSuccess() {
        info.done = true;
        info.url = upload.url;
        info.getURL = slot.get;
        localStorage.removeItem(slotKey(file));
        ui.bar.value = file.size;
        ui.text.textContent = 'done, ' + formatBytes(file.size);
        ui.button.remove();
        ui.link.href = slot.get;
        ui.link.textContent = slot.get;
      },
      async onError(err) {
        if (!navigator.onLine) {
          ui.text.textContent = 'offline; waiting for the network';
          await whenOnline();
          upload.start();
          return;
        }
        info.error = String(err.message || err);
        ui.text.textContent = info.error;
        ui.text.className = 'error';
      },
    });
    ui.button.addEventListener('click', () => {
      paused = !paused;
      ui.button.textContent = paused ? 'Resume' : 'Pause';
      if (paused) upload.abort();
      else upload.start();
    });
    const previous = await upload.findPreviousUploads();
    if (previous.length > 0) {
      info.resumed = true;
      upload.resumeFromPreviousUpload(previous[0]);
    }
    upload.start();
  }

  $('form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const pasted = $('slot').value.trim();
    for (const file of $('files').files) {
      uploadFile(file, pasted);
    }
  });
})();

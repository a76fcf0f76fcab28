// The Uppy demo page of uploadgate: the Dashboard with @uppy/tus. Before an
// upload starts, a pre-processor asks the gateway for one slot per file and
// makes it that file's tus endpoint.
'use strict';

(function () {
  const { Uppy, Dashboard, Tus } = window.Uppy;
  const MiB = 1024 * 1024;
  const state = { done: [], failed: [], complete: false };
  window.uploadgateUppyState = state;

  const uppy = new Uppy({ autoProceed: false })
    .use(Dashboard, { inline: true, target: '#dashboard', proudlyDisplayPoweredByUppy: false, height: 400 })
    .use(Tus, {
      // Replaced per file by the slot URL.
      endpoint: new URL('../files/', location.href).href,
      chunkSize: 8 * MiB,
      retryDelays: [0, 1000, 3000, 5000, 10000],
      removeFingerprintOnSuccess: true,
    });
  window.uppy = uppy;

  uppy.addPreProcessor(async (fileIDs) => {
    for (const id of fileIDs) {
      const file = uppy.getFile(id);
      if (file.tus && file.tus.endpoint) continue;
      const res = await fetch('slot', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ name: file.name, size: file.size, type: file.type || '' }),
      });
      if (!res.ok) {
        throw new Error('the gateway minted no slot: ' + res.status);
      }
      const slot = await res.json();
      uppy.setFileState(id, { tus: { endpoint: slot.putURL }, meta: { ...file.meta, getURL: slot.getURL } });
    }
  });

  uppy.on('upload-success', (file, response) => {
    state.done.push({ name: file.name, size: file.size, url: response.uploadURL, getURL: file.meta.getURL });
    const li = document.createElement('li');
    const a = document.createElement('a');
    a.href = file.meta.getURL;
    a.textContent = file.name;
    li.append(a);
    document.getElementById('done').append(li);
  });
  uppy.on('upload-error', (file, err) => {
    state.failed.push({ name: file ? file.name : '', error: String(err && err.message) });
  });
  uppy.on('complete', () => {
    state.complete = true;
  });
})();

#!/usr/bin/env node
// tus-upload.mjs: upload one file with tus-js-client, for the end-to-end tests.
//
//   node tus-upload.mjs --endpoint URL --file PATH [--chunk-size N]
//        [--url-storage PATH] [--mode upload|interrupt|resume]
//        [--interrupt-after BYTES] [--interrupt-on ack|sent]
//        [--header 'Name: value']... [--filetype TYPE] [--filename NAME]
//        [--parallel N] [--timeout-ms N] [--protocol tus-v1|ietf-draft-03|ietf-draft-05]
//
// The file is read through an fs.ReadStream, so tus-js-client computes a stable
// fingerprint (path, size, mtime, endpoint) and can find the upload again in a
// FileUrlStorage (--url-storage) from another process. --parallel N uploads N
// partial uploads and concatenates them (tus-js-client parallelUploads); the
// partial uploads carry filesize and filetype metadata, as a slot needs.
// --protocol is tus-js-client's protocol option: ietf-draft-03 and
// ietf-draft-05 speak the resumable-upload draft (interop versions 5 and 6).
//
// Modes:
//   upload     create an upload at --endpoint (or resume one found in the URL
//              storage by tus-js-client's own retry logic) and send the file.
//   interrupt  like upload, but abort (without terminating) once at least
//              --interrupt-after bytes are acknowledged by the server
//              (--interrupt-on ack, the default) or have been written into the
//              running PATCH request (--interrupt-on sent, cutting it mid-body).
//   resume     findPreviousUploads() in the URL storage, fail when there is
//              none, resumeFromPreviousUpload() with the first, then start().
//
// Prints exactly one JSON line on stdout:
//   {"ok":true,"url":...,"offsetAtStart":...,"bytesUploaded":...,...}
// offsetAtStart is the offset tus-js-client started sending from: the
// Upload-Offset of a successful HEAD (resume) or of the first PATCH (new upload).
// bytesSent is the highest file position tus-js-client reported as sent (its
// progress events are throttled, so it may lag), and bytesTransferred counts
// every body byte handed to a request.
// On failure: {"ok":false,"error":...} and exit status 1.

import fs from 'node:fs'
import path from 'node:path'
import process from 'node:process'
import { Transform } from 'node:stream'
import tus from 'tus-js-client'

const { Upload, FileUrlStorage, DefaultHttpStack } = tus

// CountingHttpStack is tus-js-client's Node HTTP stack with a byte counter on
// every request body.
class CountingHttpStack {
  constructor(onBytes) {
    this._inner = new DefaultHttpStack()
    this._onBytes = onBytes
  }

  createRequest(method, url) {
    const req = this._inner.createRequest(method, url)
    const send = req.send.bind(req)
    const onBytes = this._onBytes
    req.send = (body = null) => {
      if (body != null && typeof body.pipe === 'function') {
        const counter = new Transform({
          transform(chunk, _encoding, callback) {
            onBytes(chunk.length)
            callback(null, chunk)
          },
        })
        counter.size = body.size // the inner stack sets Content-Length from it
        body.on('error', (err) => counter.destroy(err))
        return send(body.pipe(counter))
      }
      if (body != null && body.length) onBytes(body.length)
      return send(body)
    }
    return req
  }

  getName() {
    return 'CountingHttpStack'
  }
}

function usage(msg) {
  throw new Error(`${msg}\nusage: node tus-upload.mjs --endpoint URL --file PATH [--chunk-size N] ` +
    '[--url-storage PATH] [--mode upload|interrupt|resume] [--interrupt-after BYTES] ' +
    "[--interrupt-on ack|sent] [--header 'Name: value']... [--filetype TYPE] [--filename NAME] " +
    '[--parallel N] [--timeout-ms N] [--protocol tus-v1|ietf-draft-03|ietf-draft-05]')
}

function parseArgs(argv) {
  const opts = {
    endpoint: null,
    file: null,
    chunkSize: null,
    urlStorage: null,
    mode: 'upload',
    interruptAfter: null,
    interruptOn: 'ack',
    headers: {},
    filetype: null,
    filename: null,
    parallel: 1,
    timeoutMs: 120000,
    protocol: null,
  }
  const intArg = (name, v) => {
    if (v == null || !/^\d+$/.test(v)) usage(`${name} needs a non-negative integer, got ${v}`)
    return Number(v)
  }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const next = () => {
      if (i + 1 >= argv.length) usage(`${arg} needs a value`)
      return argv[++i]
    }
    switch (arg) {
      case '--endpoint': opts.endpoint = next(); break
      case '--file': opts.file = next(); break
      case '--chunk-size': opts.chunkSize = intArg(arg, next()); break
      case '--url-storage': opts.urlStorage = next(); break
      case '--mode': opts.mode = next(); break
      case '--interrupt-after': opts.interruptAfter = intArg(arg, next()); break
      case '--interrupt-on': opts.interruptOn = next(); break
      case '--filetype': opts.filetype = next(); break
      case '--filename': opts.filename = next(); break
      case '--timeout-ms': opts.timeoutMs = intArg(arg, next()); break
      case '--parallel': opts.parallel = intArg(arg, next()); break
      case '--protocol': opts.protocol = next(); break
      case '--header': {
        const h = next()
        const colon = h.indexOf(':')
        if (colon <= 0) usage(`--header wants 'Name: value', got ${h}`)
        opts.headers[h.slice(0, colon).trim()] = h.slice(colon + 1).trim()
        break
      }
      default: usage(`unknown argument ${arg}`)
    }
  }
  if (!opts.endpoint) usage('--endpoint is required')
  if (!opts.file) usage('--file is required')
  if (!['upload', 'interrupt', 'resume'].includes(opts.mode)) usage(`unknown --mode ${opts.mode}`)
  if (!['ack', 'sent'].includes(opts.interruptOn)) usage(`unknown --interrupt-on ${opts.interruptOn}`)
  if (opts.mode === 'interrupt' && opts.interruptAfter == null) usage('--mode interrupt needs --interrupt-after')
  if (opts.chunkSize === 0) usage('--chunk-size must be positive')
  if (opts.parallel < 1) usage('--parallel must be at least 1')
  if (opts.mode === 'resume' && !opts.urlStorage) usage('--mode resume needs --url-storage')
  return opts
}

function run(opts) {
  return new Promise((resolve, reject) => {
    const size = fs.statSync(opts.file).size
    const stream = fs.createReadStream(opts.file)
    const metadata = { filename: opts.filename ?? path.basename(opts.file) }
    if (opts.filetype) metadata.filetype = opts.filetype

    const requests = {} // method -> count, e.g. {"POST":1,"PATCH":5}
    const statuses = [] // "METHOD STATUS" of every response, in order
    let offsetAtStart = null
    let acked = null // last offset the server acknowledged (PATCH or HEAD response)
    let sent = 0 // highest byte position written into a request body
    let transferred = 0 // body bytes handed to requests
    let interrupted = false
    let upload = null

    const finish = (fields) => {
      try { stream.destroy() } catch { /* already closed */ }
      resolve({
        url: upload?.url ?? null,
        size,
        offsetAtStart,
        bytesUploaded: acked ?? 0,
        bytesSent: sent,
        bytesTransferred: transferred,
        interrupted,
        requests,
        statuses,
        ...fields,
      })
    }

    const interrupt = () => {
      if (interrupted) return
      interrupted = true
      // abort(false): stop the running request, keep the upload on the server.
      upload.abort(false).then(() => finish({ ok: true }), reject)
    }

    const options = {
      endpoint: opts.endpoint,
      metadata,
      headers: opts.headers,
      retryDelays: [0, 200, 500],
      httpStack: new CountingHttpStack((n) => { transferred += n }),
      onBeforeRequest(req) {
        const method = req.getMethod()
        requests[method] = (requests[method] ?? 0) + 1
        if (method === 'PATCH' && offsetAtStart == null) {
          offsetAtStart = Number(req.getHeader('Upload-Offset'))
        }
      },
      onAfterResponse(req, res) {
        const method = req.getMethod()
        const status = res.getStatus()
        statuses.push(`${method} ${status}`)
        const ok = status >= 200 && status < 300
        const off = res.getHeader('Upload-Offset')
        if (!ok || off == null) return
        if (method === 'HEAD' && offsetAtStart == null) offsetAtStart = Number(off)
        if (method === 'HEAD' || method === 'PATCH') acked = Number(off)
      },
      onProgress(bytesSent) {
        sent = Math.max(sent, bytesSent)
        if (opts.mode === 'interrupt' && opts.interruptOn === 'sent' && bytesSent >= opts.interruptAfter) {
          interrupt()
        }
      },
      onChunkComplete(_chunk, bytesAccepted) {
        acked = bytesAccepted
        if (opts.mode === 'interrupt' && opts.interruptOn === 'ack' && bytesAccepted >= opts.interruptAfter) {
          interrupt()
        }
      },
      onSuccess() {
        if (size === 0 && offsetAtStart == null) offsetAtStart = 0
        if (acked == null && size === 0) acked = 0
        // Partial uploads acknowledge their own offsets; the final one has it all.
        if (opts.parallel > 1) acked = size
        if (opts.mode === 'interrupt') {
          // The file was complete before the interruption point was reached.
          finish({ ok: false, error: `upload completed before ${opts.interruptAfter} bytes were acknowledged` })
          return
        }
        finish({ ok: true })
      },
      onError(err) {
        finish({ ok: false, error: String(err?.message ?? err) })
      },
    }
    if (opts.chunkSize != null) options.chunkSize = opts.chunkSize
    if (opts.protocol != null) options.protocol = opts.protocol
    if (opts.parallel > 1) {
      options.parallelUploads = opts.parallel
      options.metadataForPartialUploads = { filesize: String(size) }
      if (opts.filetype) options.metadataForPartialUploads.filetype = opts.filetype
    }
    if (opts.urlStorage) options.urlStorage = new FileUrlStorage(opts.urlStorage)

    upload = new Upload(stream, options)

    if (opts.mode !== 'resume') {
      upload.start()
      return
    }
    upload.findPreviousUploads().then((previous) => {
      if (previous.length === 0) {
        finish({ ok: false, error: `no previous upload for ${opts.file} in ${opts.urlStorage}` })
        return
      }
      upload.resumeFromPreviousUpload(previous[0])
      upload.start()
    }, reject)
  })
}

function emit(result, code) {
  process.stdout.write(`${JSON.stringify(result)}\n`, () => process.exit(code))
}

let opts
try {
  opts = parseArgs(process.argv.slice(2))
} catch (err) {
  emit({ ok: false, error: String(err?.message ?? err) }, 1)
}
if (opts) {
  const timer = setTimeout(() => {
    emit({ ok: false, error: `timed out after ${opts.timeoutMs} ms` }, 1)
  }, opts.timeoutMs)
  run(opts).then(
    (result) => emit(result, result.ok ? 0 : 1),
    (err) => emit({ ok: false, error: String(err?.stack ?? err) }, 1),
  )
}

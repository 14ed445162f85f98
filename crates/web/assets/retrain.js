/* retrain.js: classifies photos in the browser with a model exported by `retrain export web`.
 *
 *   <script src="ort/ort.wasm.min.js"></script> <script src="retrain.js"></script>
 *   await retrain.ready;                       // the model is loaded
 *   retrain.classes                            // ["ants", "bees"]
 *   await retrain.classify(fileOrBlobOrImage)  // {top: [{class, probability}, ...], known, ood_score}
 *                                              // several labels: also {labels: [{class, probability, threshold}, ...]}
 *
 * The answer has the shape of an entry of `retrain predict --format json` (without `path`):
 * `top` holds every class, most likely first (`classify(x, {top: k})` for k of them); `known`
 * is there when the model has an open-set score and a threshold; `ood_score` when it has the
 * score. A several-labels model's probabilities are independent sigmoids: `labels` holds the
 * classes its graph's `labels` output turns on (each at or above its threshold, as in
 * `model.json`), most likely first. The photo is resized and cropped by preprocess.onnx (ONNX Resize with antialiasing,
 * as retrain resizes), not by a canvas; a canvas only holds the decoded pixels.
 */
(function () {
  "use strict";
  const base = new URL(".", document.currentScript ? document.currentScript.src : location.href);
  // The resized photo's pixels at most before its crop: a photo thousands of times longer
  // than wide would otherwise be resized whole to gigabytes.
  const MAX_RESIZED = 16000000;
  const api = { classes: [], info: null, backend: null, classify, ready: null };
  window.retrain = api;
  let sessions = null;
  let queue = Promise.resolve();

  api.ready = (async () => {
    const r = await fetch(new URL("model.json", base));
    if (!r.ok) throw new Error(`model.json: ${r.status} ${r.statusText}`);
    const cfg = await r.json();
    api.info = cfg;
    api.classes = cfg.classes.slice();
    ort.env.wasm.wasmPaths = new URL("ort/", base).href;
    // Threads need SharedArrayBuffer, which needs a cross-origin isolated page.
    const threads = self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;
    ort.env.wasm.numThreads = threads;
    const opts = { executionProviders: ["wasm"] };
    const pre = await ort.InferenceSession.create(new URL(cfg.preprocess, base).href, opts);
    const model = await ort.InferenceSession.create(new URL(cfg.model, base).href, opts);
    sessions = { pre, model, input: model.inputNames[0] };
    api.backend = { name: "wasm", threads, crossOriginIsolated: !!self.crossOriginIsolated };
    return api;
  })();

  /** Classifies a File, Blob, <img>, <video>, <canvas>, ImageBitmap or ImageData. One at a time. */
  function classify(input, options) {
    const p = queue.then(() => run(input, (options && options.top) || Infinity));
    queue = p.catch(() => {});
    return p;
  }

  function nameOf(input) {
    if (input && typeof input.name === "string" && input.name) return input.name;
    if (typeof Blob !== "undefined" && input instanceof Blob) return "the file";
    return "the image";
  }

  function checkSize(input, width, height, cfg) {
    if (!width || !height) throw new Error(`${nameOf(input)}: the image is empty`);
    if (width * height > cfg.max_pixels) throw new Error(`${nameOf(input)}: ${width}×${height} is more than ${cfg.max_pixels} pixels`);
  }

  async function pixels(input, cfg) {
    if (typeof ImageData !== "undefined" && input instanceof ImageData) {
      checkSize(input, input.width, input.height, cfg);
      return { data: input.data, width: input.width, height: input.height };
    }
    let bitmap;
    try {
      // As retrain decodes: EXIF orientation applied, no colour management, no premultiplication.
      bitmap = await createImageBitmap(input, { imageOrientation: "from-image", premultiplyAlpha: "none", colorSpaceConversion: "none" });
    } catch (e) {
      throw new Error(`${nameOf(input)}: not an image (the browser cannot decode it)`);
    }
    const { width, height } = bitmap;
    try {
      checkSize(input, width, height, cfg);
    } catch (e) {
      bitmap.close();
      throw e;
    }
    const canvas = typeof OffscreenCanvas !== "undefined" ? new OffscreenCanvas(width, height) : Object.assign(document.createElement("canvas"), { width, height });
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close();
    return { data: ctx.getImageData(0, 0, width, height).data, width, height };
  }

  // The shorter side to `resize`, the longer scaled and rounded half to even (torchvision).
  function resizedSize(w, h, resize) {
    const scale = (long, short) => {
      const num = resize * long, q = Math.floor(num / short), r = num % short;
      return q + (2 * r > short || (2 * r === short && q % 2 === 1) ? 1 : 0);
    };
    return w <= h ? [resize, scale(h, w)] : [scale(w, h), resize];
  }

  // torchvision's CenterCrop offset, int(round((size - crop) / 2)) with round half to even.
  function cropOffset(size, crop) {
    const d = Math.max(0, size - crop), q = Math.floor(d / 2);
    return d % 2 === 1 && q % 2 === 1 ? q + 1 : q;
  }

  async function run(input, k) {
    await api.ready;
    const cfg = api.info, c = cfg.crop;
    const { data, width, height } = await pixels(input, cfg);
    const [rw, rh] = resizedSize(width, height, cfg.resize);
    if (rw * rh > MAX_RESIZED) throw new Error(`${nameOf(input)}: ${width}×${height} is too elongated to resize`);
    const top = cropOffset(rh, c), left = cropOffset(rw, c), ch = Math.min(c, rh), cw = Math.min(c, rw);
    const ints = (a) => new ort.Tensor("int64", BigInt64Array.from(a.map((v) => BigInt(v))), [2]);
    const rgba = new Uint8Array(data.buffer, data.byteOffset, data.length);
    const pre = await sessions.pre.run({
      rgba: new ort.Tensor("uint8", rgba, [1, height, width, 4]),
      sizes: ints([rh, rw]),
      starts: ints([top, left]),
      ends: ints([top + ch, left + cw]),
    });
    let image = pre.image.data;
    if (ch < c || cw < c) {
      // Smaller than the crop: zero-padded around the centre, as retrain and CenterCrop do.
      const padded = new Uint8Array(c * c * 3), py = Math.floor((c - ch) / 2), px = Math.floor((c - cw) / 2);
      for (let y = 0; y < ch; y++) padded.set(image.subarray(y * cw * 3, (y + 1) * cw * 3), ((y + py) * c + px) * 3);
      image = padded;
    }
    const out = await sessions.model.run({ [sessions.input]: new ort.Tensor("uint8", image, [1, c, c, 3]) });
    const p = Array.from(out.probabilities.data);
    const order = p.map((_, i) => i).sort((a, b) => p[b] - p[a] || a - b);
    const result = { top: order.slice(0, k).map((i) => ({ class: cfg.classes[i] !== undefined ? cfg.classes[i] : `#${i}`, probability: p[i] })) };
    if (out.labels) {
      const thresholds = cfg.thresholds || [];
      result.labels = order.filter((i) => out.labels.data[i] > 0.5).map((i) => ({
        class: cfg.classes[i] !== undefined ? cfg.classes[i] : `#${i}`, probability: p[i], threshold: thresholds[i] !== undefined ? thresholds[i] : null,
      }));
    }
    const ood = out.ood_score ? out.ood_score.data[0] : null;
    if (ood !== null && cfg.threshold !== null) result.known = ood <= cfg.threshold;
    if (ood !== null) result.ood_score = ood;
    return result;
  }
})();

// The page: photos picked, dropped or seen by the camera, classified with window.retrain.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const status = $("status");
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const pct = (p) => `${(100 * p).toFixed(1)}%`;

  retrain.ready.then(
    (r) => {
      const b = r.backend;
      status.textContent = `${r.classes.length} classes: ${r.classes.join(", ")} · WebAssembly, ${b.threads} thread${b.threads > 1 ? "s" : ""}`;
      document.body.dataset.ready = "1";
    },
    (e) => {
      status.textContent = `The model could not be loaded: ${e.message || e}`;
      document.body.dataset.ready = "error";
    },
  );

  // What an answer looks like: "unknown" first when the model rejects it, then every class's bar.
  function show(box, answer) {
    box.replaceChildren();
    // Rejected: the bars are shown, greyed, as the nearest classes rather than an answer.
    box.classList.toggle("rejected", answer.known === false);
    if (answer.known === false) {
      box.append(el("div", "unknown", `Not one of: ${retrain.classes.join(", ")}`));
    }
    // Several labels per photo: the labels first, then each class's bar with its threshold marked.
    const thresholds = retrain.info.thresholds;
    const on = new Set((answer.labels || []).map((l) => l.class));
    box.classList.toggle("multi", !!answer.labels);
    if (answer.labels) {
      const names = answer.labels.map((l) => l.class).join(", ");
      box.append(el("div", on.size ? "labels" : "labels none", on.size ? `Labels: ${names}` : "No label reached its threshold"));
    }
    answer.top.slice(0, answer.labels ? answer.top.length : 5).forEach((t, i) => {
      const row = el("div", (i === 0 ? "row first" : "row") + (on.has(t.class) ? " on" : ""));
      row.dataset.class = t.class;
      row.dataset.probability = String(t.probability);
      const track = el("div", "track");
      const fill = el("div", "fill");
      fill.style.width = `${Math.max(0, Math.min(100, 100 * t.probability))}%`;
      track.append(fill);
      const c = retrain.classes.indexOf(t.class);
      if (answer.labels && thresholds && c >= 0) {
        const mark = el("div", "mark");
        mark.style.left = `${100 * thresholds[c]}%`;
        track.append(mark);
        row.dataset.threshold = String(thresholds[c]);
        row.title = `${t.class}: a label from ${pct(thresholds[c])}`;
      }
      row.append(el("span", "label", t.class), track, el("span", "p", pct(t.probability)));
      box.append(row);
    });
    if (answer.ood_score !== undefined) box.dataset.oodScore = String(answer.ood_score);
  }

  async function addCard(blob, name) {
    const card = el("div", "card");
    card.dataset.name = name;
    const img = el("img");
    img.alt = name;
    img.src = URL.createObjectURL(blob);
    const bars = el("div", "bars");
    bars.append(el("div", "pending", "…"));
    card.append(img, el("div", "name", name), bars);
    $("cards").prepend(card);
    try {
      show(bars, await retrain.classify(blob));
      card.dataset.done = "1";
    } catch (e) {
      bars.replaceChildren(el("div", "error", e.message || String(e)));
      img.remove();
      card.dataset.done = "error";
    }
  }

  async function addFiles(files) {
    for (const f of files) await addCard(f, f.name);
  }

  $("file").addEventListener("change", (e) => {
    addFiles(Array.from(e.target.files));
    e.target.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    addFiles(Array.from(e.dataTransfer.files));
  });

  // The camera: its frame classified continuously, a few times a second.
  let stream = null;
  async function camera() {
    if (stream) {
      stream.getTracks().forEach((t) => t.stop());
      stream = null;
      $("camera").classList.remove("on");
      $("cam").textContent = "Camera";
      return;
    }
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
    } catch (e) {
      status.textContent = `No camera: ${e.message || e}`;
      return;
    }
    const video = $("video");
    video.srcObject = stream;
    await video.play();
    $("camera").classList.add("on");
    $("cam").textContent = "Stop camera";
    const mine = stream;
    let n = 0, since = performance.now();
    while (stream === mine) {
      const t0 = performance.now();
      try {
        if (video.videoWidth > 0) {
          show($("live"), await retrain.classify(video));
          n++;
        }
      } catch (e) {
        $("live").replaceChildren(el("div", "error", e.message || String(e)));
      }
      const now = performance.now();
      if (now - since > 2000) {
        $("rate").textContent = `${(1000 * n / (now - since)).toFixed(1)} answers a second`;
        n = 0;
        since = now;
      }
      // A few answers a second; the rest of the time is the phone's.
      await new Promise((r) => setTimeout(r, Math.max(0, 250 - (now - t0))));
    }
  }
  $("cam").addEventListener("click", camera);
  $("snap").addEventListener("click", () => {
    const video = $("video");
    if (!video.videoWidth) return;
    const c = document.createElement("canvas");
    c.width = video.videoWidth;
    c.height = video.videoHeight;
    c.getContext("2d").drawImage(video, 0, 0);
    c.toBlob((b) => b && addCard(b, `camera ${new Date().toLocaleTimeString()}`), "image/png");
  });

  if ("serviceWorker" in navigator && window.isSecureContext) {
    navigator.serviceWorker.register("sw.js").then(
      () => navigator.serviceWorker.ready.then(() => { document.body.dataset.offline = "1"; }),
      (e) => console.warn(`offline use unavailable: ${e.message || e}`),
    );
  }
})();

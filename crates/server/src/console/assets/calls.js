// One call's page: clicking a transcript line or a timeline segment plays the recording from
// that moment (elements carry data-seek-ms, ms since call start).
"use strict";

(function () {
  const audio = document.getElementById("recording");
  if (!audio) return;
  document.addEventListener("click", (event) => {
    const target = event.target.closest("[data-seek-ms]");
    if (!target) return;
    const seconds = Number(target.getAttribute("data-seek-ms")) / 1000;
    if (!Number.isFinite(seconds)) return;
    audio.currentTime = Math.max(0, seconds);
    audio.play().catch(() => { /* autoplay refused: the position is still set */ });
  });
})();

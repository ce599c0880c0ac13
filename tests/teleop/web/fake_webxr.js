// A stand-in for a headset's WebXR runtime (injected before the page's scripts): one right-hand
// controller whose grip pose and gamepad buttons a test sets through window.__fakeXR.
(() => {
  const listeners = {};
  const gamepad = { buttons: Array.from({ length: 6 }, () => ({ pressed: false, value: 0 })) };
  const pose = { position: { x: 0, y: 1, z: 0 }, orientation: { x: 0, y: 0, z: 0, w: 1 } };
  const xrFrame = { getPose: () => ({ transform: pose }) };
  let pending = null;
  const session = {
    inputSources: [{ handedness: 'right', gripSpace: {}, gamepad }],
    renderState: { baseLayer: { framebuffer: null } },
    addEventListener(name, fn) { (listeners[name] = listeners[name] || []).push(fn); },
    updateRenderState() {},
    async requestReferenceSpace() { return {}; },
    requestAnimationFrame(cb) { pending = cb; },
  };
  setInterval(() => { const cb = pending; pending = null; if (cb) cb(performance.now(), xrFrame); }, 1000 / 72);
  window.XRWebGLLayer = function XRWebGLLayer() { return { framebuffer: null }; };
  const getContext = HTMLCanvasElement.prototype.getContext;
  HTMLCanvasElement.prototype.getContext = function (kind, options) {
    if (kind !== 'webgl') return getContext.call(this, kind, options);
    return { FRAMEBUFFER: 0, COLOR_BUFFER_BIT: 0, bindFramebuffer() {}, clearColor() {}, clear() {} };
  };
  Object.defineProperty(navigator, 'xr', { configurable: true, value: {
    async isSessionSupported(mode) { return mode === 'immersive-ar'; },
    async requestSession() { return session; },
  } });
  window.__fakeXR = { pose, gamepad, fire(name) { (listeners[name] || []).forEach((fn) => fn({})); } };
})();

// robot-stack AR teleop page (TactAR-style): sends the controller pose and buttons, draws the camera
// stream, the wrist force arrow and per-pad tactile shear arrows. Protocol: teleop/web/protocol.py.
// Pose source: WebXR (immersive-ar with a DOM overlay, or immersive-vr) when the browser has it,
// otherwise a virtual controller moved with the keyboard (W/S forward/back, A/D left/right,
// R/F up/down, Q/E yaw, Space held = dead-man, C held = close gripper) or by dragging the mouse.
(() => {
  'use strict';
  const SCHEMA = 1;
  const FORCE_PX_PER_N = 8, FORCE_MAX_PX = 220, SHEAR_PX_PER_M = 40000, MOVE_M_PER_S = 0.25;
  const FORCE_COLOR = '#ff2d2d', SHEAR_COLOR = '#20d0ff';
  const token = new URLSearchParams(location.search).get('token') || '';
  const canvas = document.getElementById('view');
  const ctx = canvas.getContext('2d');
  const hud = document.getElementById('hud');
  const state = window.__arState = {
    schema: SCHEMA, connected: false, clientId: null, sendHz: 60, seq: 0, sent: 0, received: 0,
    engaged: false, grip: null, source: 'mouse', pos: [0, 1.2, -0.3], quat: [0, 0, 0, 1], yaw: 0,
    wrench: null, wrenches: 0, drawn: 0, arrow: null, tactile: {}, frames: 0, frameSize: null,
    echoes: [], events: 0, xr: null, sendTimes: [], unauthorized: false, errors: [],
  };
  window.addEventListener('error', (e) => state.errors.push(String(e.message)));
  window.addEventListener('unhandledrejection', (e) => state.errors.push(String(e.reason)));
  const sentAt = new Map();
  const keys = new Set();
  let ws = null, sendTimer = null, dirty = true, frame = null, lastMove = performance.now();

  // --- connection -----------------------------------------------------------------------------
  function connect() {
    const proto = location.protocol === 'https:' ? 'wss' : 'ws';
    ws = new WebSocket(`${proto}://${location.host}/ws${token ? '?token=' + encodeURIComponent(token) : ''}`);
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => send('hello', { token });     // the token again, for proxies that drop the query
    ws.onmessage = onMessage;
    ws.onclose = (e) => {
      state.connected = false; dirty = true;
      state.unauthorized = e.code === 4401;           // a wrong or missing token: retrying will not help
      if (!state.unauthorized) setTimeout(connect, 1000);
    };
  }

  function send(type, fields) {
    if (!ws || ws.readyState !== WebSocket.OPEN) return false;
    const seq = state.seq++;
    const t = performance.timeOrigin + performance.now();
    ws.send(JSON.stringify({ v: SCHEMA, type, seq, t, ...fields }));
    return seq;
  }

  function sendPose() {
    const seq = send('pose', { pos: state.pos, quat: state.quat, engaged: state.engaged,
                               grip: state.grip, source: state.source });
    if (seq === false) return;
    const now = performance.now();
    sentAt.set(seq, now);
    if (sentAt.size > 1024) sentAt.delete(sentAt.keys().next().value);
    state.sent++;
    state.sendTimes.push(now);
    if (state.sendTimes.length > 600) state.sendTimes.shift();
  }

  function startSending(hz) {
    state.sendHz = hz;
    clearInterval(sendTimer);
    sendTimer = setInterval(() => { if (!state.xr) { moveVirtual(); sendPose(); } }, 1000 / hz);
  }

  function sendEvent(name) {
    if (send('event', { event: name }) !== false) state.events++;
  }

  function onMessage(ev) {
    state.received++;
    if (ev.data instanceof ArrayBuffer) { onFrame(ev.data); return; }
    const msg = JSON.parse(ev.data);
    if (msg.type === 'hello') {
      state.connected = true; state.clientId = msg.client; startSending(msg.send_hz);
    } else if (msg.type === 'wrench') {
      state.wrench = msg; state.wrenches++;
    } else if (msg.type === 'tactile') {
      state.tactile[msg.pad.id] = msg.pad;
    }
    dirty = true;
  }

  function onFrame(buffer) {
    createImageBitmap(new Blob([buffer], { type: 'image/jpeg' })).then((bitmap) => {
      if (frame) frame.close();
      frame = bitmap; state.frames++; state.frameSize = [bitmap.width, bitmap.height]; dirty = true;
    }, () => {});
  }

  // --- virtual controller (keyboard / mouse) --------------------------------------------------
  function yawQuat(yaw) { return [0, Math.sin(yaw / 2), 0, Math.cos(yaw / 2)]; }

  function moveVirtual() {
    const now = performance.now(), dt = Math.min((now - lastMove) / 1000, 0.1);
    lastMove = now;
    const step = MOVE_M_PER_S * dt, axis = { KeyD: [0, 1], KeyA: [0, -1], KeyR: [1, 1], KeyF: [1, -1],
                                             KeyS: [2, 1], KeyW: [2, -1] };
    for (const [code, [i, sign]] of Object.entries(axis)) if (keys.has(code)) state.pos[i] += sign * step;
    if (keys.has('KeyQ')) state.yaw += 1.5 * dt;
    if (keys.has('KeyE')) state.yaw -= 1.5 * dt;
    state.quat = yawQuat(state.yaw);
    state.engaged = keys.has('Space') || engageHeld;
    state.grip = keys.has('KeyC') ? 1 : 0;
  }

  const EVENT_KEYS = { Digit1: 'start', Digit2: 'stop', Digit3: 'discard', Digit4: 'success' };
  window.addEventListener('keydown', (e) => {
    if (EVENT_KEYS[e.code] && !e.repeat) sendEvent(EVENT_KEYS[e.code]);
    keys.add(e.code);
    if (e.code === 'Space') e.preventDefault();
  });
  window.addEventListener('keyup', (e) => keys.delete(e.code));
  window.addEventListener('blur', () => keys.clear());   // never leave the dead-man held

  let drag = null, engageHeld = false;
  canvas.addEventListener('pointerdown', (e) => { drag = [e.clientX, e.clientY]; canvas.setPointerCapture(e.pointerId); });
  canvas.addEventListener('pointerup', () => { drag = null; });
  canvas.addEventListener('pointermove', (e) => {
    if (!drag) return;
    state.pos[0] += (e.clientX - drag[0]) * 0.001;      // right
    state.pos[2] += (e.clientY - drag[1]) * 0.001;      // screen down = towards the operator
    drag = [e.clientX, e.clientY];
  });
  canvas.addEventListener('wheel', (e) => { state.pos[1] -= e.deltaY * 0.0005; e.preventDefault(); }, { passive: false });
  const engageButton = document.getElementById('engage');
  const hold = (on) => () => { engageHeld = on; engageButton.classList.toggle('on', on); };
  engageButton.addEventListener('pointerdown', hold(true));
  for (const ev of ['pointerup', 'pointerleave', 'pointercancel']) engageButton.addEventListener(ev, hold(false));
  for (const b of document.querySelectorAll('button[data-event]')) b.addEventListener('click', () => sendEvent(b.dataset.event));

  // --- WebXR ----------------------------------------------------------------------------------
  // xr-standard gamepad: 4 = A/X toggles start/stop, 5 = B/Y success, 3 = thumbstick press discard
  const XR_BUTTONS = [[4, 'toggle'], [5, 'success'], [3, 'discard']];
  const pressed = new Set();

  async function enterXR(mode) {
    const overlay = document.getElementById('overlay');
    const session = await navigator.xr.requestSession(mode, {
      optionalFeatures: ['local-floor', 'dom-overlay'], domOverlay: { root: overlay } });
    const gl = document.createElement('canvas').getContext('webgl', { xrCompatible: true });
    session.updateRenderState({ baseLayer: new XRWebGLLayer(session, gl) });
    const space = await session.requestReferenceSpace('local-floor').catch(() => session.requestReferenceSpace('local'));
    let selecting = false, squeezing = false;
    session.addEventListener('selectstart', () => { selecting = true; });
    session.addEventListener('selectend', () => { selecting = false; });
    session.addEventListener('squeezestart', () => { squeezing = true; });
    session.addEventListener('squeezeend', () => { squeezing = false; });
    session.addEventListener('end', () => { state.xr = null; state.source = 'mouse'; });
    state.xr = mode; state.source = 'xr';
    let lastSend = 0;
    const onXRFrame = (t, xrFrame) => {
      session.requestAnimationFrame(onXRFrame);
      gl.bindFramebuffer(gl.FRAMEBUFFER, session.renderState.baseLayer.framebuffer);
      gl.clearColor(0, 0, 0, 0); gl.clear(gl.COLOR_BUFFER_BIT);
      readController(session, xrFrame, space);
      state.engaged = selecting || squeezing;
      if (t - lastSend >= 1000 / state.sendHz) { lastSend = t; sendPose(); }
      draw();
    };
    session.requestAnimationFrame(onXRFrame);
  }

  function readController(session, xrFrame, space) {
    const sources = [...session.inputSources].filter((s) => s.gripSpace);
    const src = sources.find((s) => s.handedness === 'right') || sources[0];
    if (!src) return;
    const pose = xrFrame.getPose(src.gripSpace, space);
    if (pose) {
      const p = pose.transform.position, o = pose.transform.orientation;
      state.pos = [p.x, p.y, p.z]; state.quat = [o.x, o.y, o.z, o.w];
    }
    const buttons = src.gamepad ? src.gamepad.buttons : [];
    state.grip = buttons[0] ? buttons[0].value : null;
    for (const [i, name] of XR_BUTTONS) {
      const down = !!(buttons[i] && buttons[i].pressed);
      if (down && !pressed.has(i)) {
        if (name === 'toggle') { state.recording = !state.recording; sendEvent(state.recording ? 'start' : 'stop'); }
        else sendEvent(name);
      }
      if (down) pressed.add(i); else pressed.delete(i);
    }
  }

  async function offerXR() {
    if (!navigator.xr) return;
    for (const [mode, id] of [['immersive-ar', 'xr-ar'], ['immersive-vr', 'xr-vr']]) {
      if (await navigator.xr.isSessionSupported(mode).catch(() => false)) {
        const b = document.getElementById(id);
        b.hidden = false;
        b.addEventListener('click', () => enterXR(mode).catch((e) => { hud.textContent = 'XR: ' + e; }));
      }
    }
  }

  // --- drawing --------------------------------------------------------------------------------
  function arrow(x0, y0, dx, dy, color, width) {
    const len = Math.hypot(dx, dy);
    ctx.strokeStyle = ctx.fillStyle = color; ctx.lineWidth = width;
    ctx.beginPath(); ctx.moveTo(x0, y0); ctx.lineTo(x0 + dx, y0 + dy); ctx.stroke();
    if (len < 1) return;
    const ux = dx / len, uy = dy / len, head = Math.min(4 * width, len / 2);
    ctx.beginPath(); ctx.moveTo(x0 + dx + ux * head, y0 + dy + uy * head);
    ctx.lineTo(x0 + dx - uy * head, y0 + dy + ux * head); ctx.lineTo(x0 + dx + uy * head, y0 + dy - ux * head);
    ctx.fill();
  }

  function drawForce(w, h) {
    if (!state.wrench || !state.wrench.force) return;
    const [fx, fy] = state.wrench.force.map((v) => v || 0);
    let dx = -fy * FORCE_PX_PER_N, dy = -fx * FORCE_PX_PER_N;      // top-down: robot +x up, +y left
    const len = Math.hypot(dx, dy);
    if (len > FORCE_MAX_PX) { dx *= FORCE_MAX_PX / len; dy *= FORCE_MAX_PX / len; }
    arrow(w / 2, h / 2, dx, dy, FORCE_COLOR, 6);
    state.arrow = { x0: w / 2, y0: h / 2, x1: w / 2 + dx, y1: h / 2 + dy };
  }

  function drawTactile(w, h) {
    const pads = Object.values(state.tactile);
    pads.forEach((pad, i) => {
      const x = (w * (i + 1)) / (pads.length + 1), y = h - 110;
      ctx.strokeStyle = '#888'; ctx.lineWidth = 1; ctx.strokeRect(x - 40, y - 40, 80, 80);
      ctx.beginPath(); ctx.arc(x, y, 4 + Math.min(30, Math.abs(pad.normal || 0) * SHEAR_PX_PER_M), 0, 2 * Math.PI);
      ctx.stroke();
      arrow(x, y, (pad.shear[0] || 0) * SHEAR_PX_PER_M, -(pad.shear[1] || 0) * SHEAR_PX_PER_M, SHEAR_COLOR, 3);
    });
  }

  function noteEcho() {
    const w = state.wrench, a = w && w.answers;
    if (!a || a.client !== state.clientId || w.echoed || !sentAt.has(a.seq)) return;
    w.echoed = true;
    state.echoes.push(performance.now() - sentAt.get(a.seq));
    if (state.echoes.length > 5000) state.echoes.shift();
  }

  function draw() {
    if (canvas.width !== innerWidth || canvas.height !== innerHeight) {
      canvas.width = innerWidth; canvas.height = innerHeight;
    }
    const w = canvas.width, h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    if (frame && !state.xr) ctx.drawImage(frame, 0, 0, w, h);
    drawForce(w, h);
    drawTactile(w, h);
    noteEcho();
    state.drawn++;
    const f = state.wrench ? state.wrench.force.map((v) => (v || 0).toFixed(1)).join(', ') : '-';
    const link = state.connected ? 'connected' : state.unauthorized ? 'refused: open the URL with ?token=' : 'connecting...';
    hud.textContent = `${link}  ${state.source}  `
      + `${state.engaged ? 'ENGAGED' : 'idle'}\nforce [${f}] N  frames ${state.frames}  sent ${state.sent}`;
  }

  function loop() {
    requestAnimationFrame(loop);
    if (dirty && !state.xr) { dirty = false; draw(); }
  }

  // Automation and tests: move the virtual controller, hold the dead-man, press a button.
  window.__ar = {
    setPose(pos, yaw) { state.pos = pos.slice(); if (yaw !== undefined) state.yaw = yaw; },
    hold(on) { engageHeld = !!on; },
    event: sendEvent,
  };
  setInterval(() => { if (state.connected) send('ack', { drawn: state.drawn }); }, 1000);
  connect();
  offerXR();
  requestAnimationFrame(loop);
})();

// DeepFER live demo: the webcam to the server over WebRTC, the annotated video and per-face emotions back.
"use strict";
const EMOTIONS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"];
const COLOURS = {angry: "#e63946", disgust: "#6a994e", fear: "#9b5de5", happy: "#ffc828", neutral: "#c8c8c8", sad: "#3a86ff", surprise: "#ff7800"};
const $ = (sel) => document.querySelector(sel);
let pc = null, stream = null, session = null, channel = null, lastMessage = 0, messages = [];

function show(text, isError = false) {
  $("#message").textContent = text;
  $("#message").className = "message" + (isError ? " error" : "");
}

function setState(text) {
  $("#state").textContent = text;
  $("#state").className = "status " + text;
}

// Why a request failed, in words: the server's own reason, or that it cannot be reached at all.
async function requestError(res) {
  if (res.status === 401) return "You are not signed in: open /login, then come back to /demo.";
  const body = await res.json().catch(() => null);
  return `The server refused (${res.status}): ${(body && body.detail) || res.statusText}`;
}
const UNREACHABLE = "The DeepFER server cannot be reached: check that it is running and that this page's address is right.";

async function post(path, body) {
  let res;
  try {
    res = await fetch(path, {method: "POST", credentials: "same-origin", headers: {"Content-Type": "application/json"},
                             body: JSON.stringify(body)});
  } catch (e) { throw new Error(UNREACHABLE); }
  if (!res.ok) throw new Error(await requestError(res));
  return res.json();
}

async function getJson(path) {
  let res;
  try { res = await fetch(path, {credentials: "same-origin"}); } catch (e) { throw new Error(UNREACHABLE); }
  if (!res.ok) throw new Error(await requestError(res));
  return res.json();
}

function cameraError(e) {
  if (e.name === "NotAllowedError" || e.name === "SecurityError")
    return "Camera access was denied. Allow the camera for this site (the camera icon in the address bar), then press Start again.";
  if (e.name === "NotFoundError" || e.name === "OverconstrainedError") return "No camera was found on this device.";
  if (e.name === "NotReadableError") return "The camera is in use by another application.";
  return `The camera could not be opened (${e.name}: ${e.message}).`;
}

// aiortc does not take trickled candidates: send the offer once gathering is complete (or after a short wait).
function gathered(peer, timeoutMs) {
  if (peer.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { if (peer.iceGatheringState === "complete") { peer.removeEventListener("icegatheringstatechange", done); resolve(); } };
    peer.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, timeoutMs);
  });
}

async function start() {
  $("#start").disabled = true;
  show("");
  if (!window.RTCPeerConnection) { show("This browser has no WebRTC support.", true); $("#start").disabled = false; return; }
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    show("The camera is only available to pages served over HTTPS or from localhost: open the demo that way.", true);
    $("#start").disabled = false;
    return;
  }
  setState("starting");
  try {
    const config = await getJson("/api/webrtc/config");
    try {
      stream = await navigator.mediaDevices.getUserMedia({video: {width: {ideal: 640}, height: {ideal: 480}}, audio: false});
    } catch (e) { throw new Error(cameraError(e)); }
    $("#local").srcObject = stream;
    pc = new RTCPeerConnection({iceServers: config.ice_servers});
    pc.addTransceiver(stream.getVideoTracks()[0], {direction: "sendrecv"});
    channel = pc.createDataChannel("faces", {ordered: false, maxRetransmits: 0});
    channel.onmessage = (ev) => render(JSON.parse(ev.data));
    pc.ontrack = (ev) => { $("#remote").srcObject = new MediaStream([ev.track]); };
    const peer = pc;
    pc.onconnectionstatechange = () => {
      if (peer !== pc) return;
      setState(pc.connectionState);
      if (pc.connectionState === "connected") show("Connected: your video is analysed live.");
      if (pc.connectionState === "failed") { show("The connection to the server was lost.", true); stop(); }
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 3000);
    const answer = await post("/api/webrtc/offer", {sdp: pc.localDescription.sdp, type: pc.localDescription.type});
    session = answer.session_id;
    await pc.setRemoteDescription({sdp: answer.sdp, type: answer.type});
    $("#info").textContent = `session ${answer.session_id}, camera ${answer.camera_id}`;
    $("#stop").disabled = false;
  } catch (e) {
    show(e.message, true);
    stop();
  }
}

function stop() {
  const ending = session;
  session = null;
  if (channel) channel.close();
  if (pc) pc.close();
  if (stream) stream.getTracks().forEach((t) => t.stop());
  pc = channel = stream = null;
  // the server also notices the closed connection; this frees the session at once
  if (ending) fetch(`/api/webrtc/sessions/${ending}`, {method: "DELETE", credentials: "same-origin", keepalive: true}).catch(() => {});
  $("#remote").srcObject = null;
  $("#local").srcObject = null;
  setState("stopped");
  $("#start").disabled = false;
  $("#stop").disabled = true;
}

function bar(emotion, p) {
  // built node by node, styled through the CSSOM: the Content-Security-Policy refuses inline style attributes
  const row = document.createElement("div"), name = document.createElement("span"), fill = document.createElement("div"),
    value = document.createElement("span");
  row.className = "bar";
  name.textContent = emotion;
  fill.style.width = `${Math.round(p * 100)}%`;
  fill.style.background = COLOURS[emotion];
  value.textContent = `${(p * 100).toFixed(0)}%`;
  row.append(name, fill, value);
  return row;
}

function render(msg) {
  const now = performance.now();
  messages.push(now);
  while (messages.length && messages[0] < now - 2000) messages.shift();
  lastMessage = now;
  const box = $("#faces");
  box.replaceChildren();
  if (!msg.faces.length) { box.innerHTML = '<p class="muted">No face in view.</p>'; }
  for (const face of msg.faces) {
    const card = document.createElement("div");
    card.className = "face";
    const title = document.createElement("div");
    title.className = "face-emotion";
    title.textContent = `${face.track_id === null ? "new face" : "#" + face.track_id} ${face.emotion} ${(face.confidence * 100).toFixed(0)}%`;
    title.style.color = COLOURS[face.emotion];
    card.append(title);
    for (const e of EMOTIONS) card.append(bar(e, face.probabilities[e]));
    box.append(card);
  }
  const rate = messages.length > 1 ? (messages.length - 1) / ((messages[messages.length - 1] - messages[0]) / 1000) : 0;
  $("#info").textContent = `${msg.camera_id}: ${rate.toFixed(1)} analysed frames/s, server delay ${msg.latency_ms ?? "–"} ms`;
}

$("#start").addEventListener("click", start);
$("#stop").addEventListener("click", () => { show("Stopped."); stop(); });
window.addEventListener("pagehide", stop);

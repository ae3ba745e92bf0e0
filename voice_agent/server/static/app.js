// The page: microphone → server (binary PCM16), server events → three live panes, answer
// audio → a jitter-buffered player that stops at once on barge-in. No build step.
const OUT_RATE = 24000;
const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);

let ws = null, stream = null, micCtx = null, playCtx = null, player = null;
let pushedSamples = 0, playedSamples = 0, itemStart = 0, currentItem = null;
let userLine = null, thinkBlock = null, sayBlock = null, sayText = "";

function setStatus(text) { $("status").textContent = text; }

function socketUrl() {
  const url = new URL("/v1/realtime", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (params.get("token")) url.searchParams.set("token", params.get("token"));
  return url.href;
}

async function start() {
  $("start").disabled = true;
  try {
    // The browser's echo canceller removes our own voice from the mic, so speakers work.
    stream = await navigator.mediaDevices.getUserMedia({ audio: {
      echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 } });
    try { micCtx = new AudioContext({ sampleRate: 16000 }); }
    catch (e) { micCtx = new AudioContext(); }  // the server resamples any listed rate
    playCtx = new AudioContext({ sampleRate: OUT_RATE });
    await micCtx.audioWorklet.addModule("/static/mic-worklet.js");
    await playCtx.audioWorklet.addModule("/static/player-worklet.js");
    await Promise.all([micCtx.resume(), playCtx.resume()]);
    player = new AudioWorkletNode(playCtx, "player", { processorOptions: { startMs: 120 } });
    player.port.onmessage = (e) => {
      playedSamples = e.data.played;
      document.body.dataset.playedMs = String(Math.round(playedSamples / OUT_RATE * 1000));
      document.body.dataset.underruns = String(e.data.underruns);
    };
    player.connect(playCtx.destination);
  } catch (e) {
    setStatus("microphone or audio unavailable: " + e.message);
    $("start").disabled = false;
    return;
  }
  ws = new WebSocket(socketUrl());
  ws.binaryType = "arraybuffer";
  ws.onopen = () => {
    ws.send(JSON.stringify({ type: "session.update", session: {
      type: "realtime",
      audio: { input: { format: { type: "audio/pcm", rate: micCtx.sampleRate } },
               output: { format: { type: "audio/pcm", rate: OUT_RATE } } },
      voice_agent: { binary_audio: true } } }));
    const source = micCtx.createMediaStreamSource(stream);
    const mic = new AudioWorkletNode(micCtx, "mic-capture");
    mic.port.onmessage = (e) => { if (ws && ws.readyState === WebSocket.OPEN) ws.send(e.data); };
    const mute = micCtx.createGain();  // keeps the node pulled by the graph, silently
    mute.gain.value = 0;
    source.connect(mic).connect(mute).connect(micCtx.destination);
    document.body.dataset.state = "connected";
    setStatus("listening");
    $("stop").disabled = false;
  };
  ws.onmessage = (e) => {
    if (e.data instanceof ArrayBuffer) play(new Int16Array(e.data));
    else handle(JSON.parse(e.data));
  };
  ws.onclose = (e) => {
    setStatus(`disconnected (${e.code}${e.reason ? ": " + e.reason : ""})`);
    document.body.dataset.state = "closed";
    stop();
  };
}

function stop() {
  if (ws && ws.readyState <= WebSocket.OPEN) ws.close();
  if (stream) stream.getTracks().forEach((t) => t.stop());
  for (const ctx of [micCtx, playCtx]) if (ctx && ctx.state !== "closed") ctx.close();
  ws = stream = micCtx = playCtx = player = null;
  $("start").disabled = false;
  $("stop").disabled = true;
}

function play(pcm) {
  const samples = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) samples[i] = pcm[i] / 32768;
  pushedSamples += samples.length;
  if (player) player.port.postMessage({ type: "push", samples }, [samples.buffer]);
}

function span(parent, cls, text = "") {
  const el = document.createElement("span");
  el.className = cls;
  el.textContent = text;
  parent.appendChild(el);
  return el;
}

function block(pane, label) {
  const div = document.createElement("div");
  div.className = "turn";
  div.dataset.label = label;
  $(pane).appendChild(div);
  return div;
}

function scroll(id) { const el = $(id); el.scrollTop = el.scrollHeight; }

function handle(ev) {
  switch (ev.type) {
    case "session.created": case "session.updated":
      document.body.dataset.session = ev.session.id;
      $("engine").textContent = `model: ${ev.session.model}` +
        (ev.session.model === "tiny" ? " (a random test model: its words are noise)" : "");
      break;
    case "input_audio_buffer.speech_started":
      userLine = block("heard", ev.item_id);
      userLine.committed = span(userLine, "committed");
      userLine.tentative = span(userLine, "tentative");
      setStatus("hearing you"); break;
    case "conversation.item.input_audio_transcription.delta":
      if (userLine) userLine.committed.textContent += ev.delta; scroll("heard"); break;
    case "voice_agent.transcript.tentative":
      if (userLine) userLine.tentative.textContent = " " + ev.text; break;
    case "conversation.item.input_audio_transcription.completed":
      if (userLine) { userLine.committed.textContent = ev.transcript; userLine.tentative.textContent = ""; }
      break;
    case "response.created":
      thinkBlock = block("thinking", ev.response.id);
      sayBlock = block("saying", ev.response.id);
      sayText = "";
      itemStart = pushedSamples; break;
    case "response.output_item.added": currentItem = ev.item.id; break;
    case "voice_agent.thought.delta":
      if (thinkBlock) { thinkBlock.textContent += ev.delta; scroll("thinking"); } break;
    case "voice_agent.thought.revised":  // the thoughts so far, after a re-read with new words
      if (thinkBlock) { thinkBlock.textContent = ev.text; scroll("thinking"); } break;
    case "response.output_audio_transcript.delta":
      sayText += ev.delta;
      if (sayBlock) { sayBlock.textContent = sayText; scroll("saying"); }
      setStatus("speaking"); break;
    case "response.output_audio.delta": {  // base64 audio, when binary_audio is off
      const bytes = Uint8Array.from(atob(ev.delta), (c) => c.charCodeAt(0));
      play(new Int16Array(bytes.buffer)); break;
    }
    case "voice_agent.barge_in": bargeIn(ev); break;
    case "response.output_audio.done": if (player) player.port.postMessage({ type: "flush" }); break;
    case "voice_agent.engine.state": $("engine").textContent = `engine: ${ev.state}`; break;
    case "voice_agent.control":
      $("engine").textContent += ` · control: ${ev.decision} (p_yes ${ev.p_yes.toFixed(3)})`; break;
    case "response.done":
      document.body.dataset.turns = String(Number(document.body.dataset.turns) + 1);
      setStatus("listening"); break;
    case "voice_agent.turn.metrics": latencyRow(ev.turn, ev.metrics); break;
    case "error": setStatus("error: " + ev.error.message); break;
  }
}

function bargeIn(ev) {
  // Stop at once: what is queued was never heard. Tell the server how much was.
  if (player) player.port.postMessage({ type: "clear" });
  const heardMs = Math.max(0, Math.round((playedSamples - itemStart) / OUT_RATE * 1000));
  pushedSamples = playedSamples;
  if (sayBlock) {
    const kept = sayText.slice(0, ev.heard_chars);
    sayBlock.textContent = kept;
    span(sayBlock, "cut", sayText.slice(ev.heard_chars));
    sayText = kept;
  }
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify({ type: "conversation.item.truncate", item_id: ev.item_id || currentItem,
                             content_index: 0, audio_end_ms: heardMs }));
  }
  document.body.dataset.bargeIns = String(Number(document.body.dataset.bargeIns || 0) + 1);
}

function latencyRow(turn, m) {
  const s = (v) => (v === null || v === undefined ? "–" : `${v.toFixed(2)} s`);
  const row = document.createElement("tr");
  for (const v of [String(turn), s(m.response_latency), s(m.first_answer_token),
                   s(m.asr_final_latency), s(m.stall_total),
                   String(m.thought_tokens_while_listening ?? "–")]) {
    const td = document.createElement("td");
    td.textContent = v;
    row.appendChild(td);
  }
  document.querySelector("#latency tbody").appendChild(row);
}

$("start").addEventListener("click", start);
$("stop").addEventListener("click", stop);

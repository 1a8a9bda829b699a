// Following a run: its events (status, stdout, stderr, test, result) as /executions/{id}/stream or
// the interactive WebSocket give them. EventSource cannot send an API key, so the stream is read with
// fetch; a browser's WebSocket cannot either, so the key rides as a subprotocol (gateway/auth.py).
import { ApiError, authHeaders, call, refusal, savedKey } from "./api.js";

const RECONNECTS = 5;

/** Calls `onEvent(kind, data)` for each event before the result; resolves to the result (the GET body). */
export async function follow(executionId, onEvent) {
  let lastId = null;
  for (let attempt = 0; attempt <= RECONNECTS; attempt += 1) {
    try {
      const result = await readStream(executionId, lastId, onEvent, (id) => (lastId = id));
      if (result) return result;
    } catch (error) {
      if (error instanceof ApiError && error.status !== 0 && error.status !== 503) throw error;
    }
    await new Promise((resolve) => setTimeout(resolve, 500 * (attempt + 1)));
  }
  // The stream kept failing: the run's end is still there to read.
  return call("GET", `/executions/${executionId}?wait=30`);
}

async function readStream(executionId, lastId, onEvent, seen) {
  const headers = { ...authHeaders(), Accept: "text/event-stream" };
  if (lastId) headers["Last-Event-ID"] = lastId;
  let response;
  try {
    response = await fetch(`/executions/${executionId}/stream`, { headers });
  } catch {
    throw new ApiError(0, "The server cannot be reached.");
  }
  if (!response.ok) throw await refusal(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return null; // ended before its result: reconnect from lastId
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const event = parseEvent(buffer.slice(0, end));
      buffer = buffer.slice(end + 2);
      if (!event) continue;
      if (event.id) seen(event.id);
      const data = JSON.parse(event.data);
      if (event.kind === "result") {
        reader.cancel();
        return data;
      }
      onEvent(event.kind, data);
    }
  }
}

function parseEvent(block) {
  let kind = "message";
  let id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue; // a keep-alive comment
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") kind = value;
    else if (field === "id") id = value;
    else if (field === "data") data.push(value);
  }
  return data.length ? { kind, id, data: data.join("\n") } : null;
}

/** An interactive run's WebSocket: events as `follow` gives them; `send(text)` types, `close()` ends stdin. */
export function interact(executionId, onEvent, onError) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const key = savedKey();
  const protocols = key ? ["lce", `lce.key.${key}`] : [];
  const socket = new WebSocket(`${scheme}://${location.host}/executions/${executionId}/interact`, protocols);
  let finished = false;
  const result = new Promise((resolve, reject) => {
    socket.onmessage = (message) => {
      const event = JSON.parse(message.data);
      if (event.type === "error") {
        onError(new ApiError(event.status, event.message));
      } else if (event.type === "result") {
        finished = true;
        resolve(event.execution);
      } else {
        onEvent(event.type, event);
      }
    };
    socket.onclose = () => {
      if (finished) return;
      // Refused at the handshake (a browser does not tell why) or cut: the run's end can still be read.
      call("GET", `/executions/${executionId}?wait=30`).then(resolve, reject);
    };
  });
  const whenOpen = new Promise((resolve) => socket.addEventListener("open", resolve, { once: true }));
  return {
    result,
    send: (text) => whenOpen.then(() => socket.send(JSON.stringify({ type: "stdin", data: text }))),
    close: () => whenOpen.then(() => socket.send(JSON.stringify({ type: "close" }))),
  };
}

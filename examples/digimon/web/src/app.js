// The digimon page: creates a digimon, feeds it (Foster) and shows its QueryStream updates, all
// through gRPC-Web on the API host, a cross-origin call the browser allows only if the mesh's
// CORS answers say so.
import { ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { Digimon } from "../gen/schema_pb.js";

// The API host of the example config (examples/digimon/mesh.yaml).
const API = "http://api.backend.com";

const transport = createGrpcWebTransport({
  baseUrl: API,
  // Send cookies: the browser then also requires Access-Control-Allow-Credentials.
  fetch: (input, init) => globalThis.fetch(input, { ...init, credentials: "include" }),
  defaultTimeoutMs: 15000,
});
const client = createClient(Digimon, transport);

const $ = (id) => document.getElementById(id);

function setState(state, text) {
  $("state").dataset.state = state;
  $("state").textContent = text;
}

function describe(err) {
  const e = ConnectError.from(err);
  let text = `[${codeName(e.code)}] ${e.rawMessage || e.message}`;
  if (/failed to fetch/i.test(text)) {
    // A CORS refusal reaches scripts only as a failed fetch, without details.
    text += `\nThe browser did not let this page read ${API} (a CORS refusal or a network`
      + " error); its console says which.";
  }
  return text;
}

function codeName(code) {
  const names = ["ok", "canceled", "unknown", "invalid_argument", "deadline_exceeded", "not_found",
    "already_exists", "permission_denied", "resource_exhausted", "failed_precondition", "aborted",
    "out_of_range", "unimplemented", "internal", "unavailable", "data_loss", "unauthenticated"];
  return names[code] ?? String(code);
}

async function run(name, food) {
  $("created").textContent = "";
  $("updates").replaceChildren();
  $("error").textContent = "";
  setState("creating", `Creating ${name}…`);
  const created = await client.create({ name });
  $("created").textContent = `Created ${created.name} (id ${created.id}), status: ${created.status}`;
  setState("feeding", `Feeding ${created.name} ${food}…`);
  await client.foster({ id: created.id, food: { name: food } });
  $("created").textContent += `; fed ${food}`;
  setState("watching", `Watching ${created.name}…`);
  let n = 0;
  for await (const u of client.queryStream({ id: created.id })) {
    n += 1;
    const li = document.createElement("li");
    li.textContent = `${u.name}: ${u.status} at ${u.location}, weather ${u.weather}`;
    $("updates").append(li);
  }
  setState("done", `Done: ${n} updates streamed.`);
}

$("origin").textContent = location.origin;
$("api").textContent = API;
$("form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("go").disabled = true;
  try {
    await run($("name").value.trim(), $("food").value.trim());
  } catch (err) {
    setState("error", "Failed.");
    $("error").textContent = describe(err);
  } finally {
    $("go").disabled = false;
  }
});

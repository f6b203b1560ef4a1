// Validates rendered Kubernetes manifests (helm template output) offline.
//
//   node validate_manifests.mjs --tools DIR --crds DIR [--configs-out DIR] FILE...
//
// DIR (--tools) is the cache that tools/deploy/fetch_tools.sh fills; its
// node/node_modules holds kubernetes-models, @kubernetes-models/prometheus-operator,
// yaml, typescript and (through them) ajv. --crds holds CustomResourceDefinition
// YAML files for the kinds those packages lack (InferencePool).
//
// Each document of each FILE gets:
//   1. schema: the Kubernetes OpenAPI schema of its kind (kubernetes-models'
//      compiled validators: types, required fields, enums, formats), or the
//      CRD's openAPIV3Schema; a kind with no schema is an error;
//   2. unknown fields: every object literal is type-checked by TypeScript
//      against the kind's declared interface, which rejects fields the API
//      does not have (the API server would drop or refuse them); CRD kinds get
//      additionalProperties: false on every object of their schema instead;
//   3. references within one FILE: Deployment selectors match their pod
//      labels; every Service, PodDisruptionBudget and InferencePool selects a
//      rendered Deployment and names ports its pods have; ServiceMonitor, HPA,
//      RoleBinding, ServiceAccount, ConfigMap and Secret references resolve
//      (a Secret may be external when named so); volume mounts name volumes;
//      a container with --drain-timeout has a grace period longer than the
//      preStop sleep plus the drain.
// With --configs-out, each Secret key holding ternd's config JSON is written
// there so that the caller can parse it as tern.v1.ServerConfig.
// Exit status: 0 when every document passes, 1 otherwise.

import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const args = process.argv.slice(2);
const opt = (name) => {
  const i = args.indexOf(name);
  if (i < 0) return undefined;
  const value = args[i + 1];
  args.splice(i, 2);
  return value;
};
const toolsDir = opt("--tools");
const crdDir = opt("--crds");
const configsOut = opt("--configs-out");
const externalSecrets = new Set((opt("--external-secrets") || "").split(",").filter(Boolean));
const files = args;
if (!toolsDir || !crdDir || files.length === 0) {
  console.error("usage: validate_manifests.mjs --tools DIR --crds DIR [--configs-out DIR] [--external-secrets A,B] FILE...");
  process.exit(2);
}
const nodeDir = path.join(toolsDir, "node");
const require = createRequire(path.join(nodeDir, "package.json"));
const YAML = require("yaml");
const ts = require("typescript");
const Ajv = require("ajv");

// apiVersion -> module folder of the model classes.
function modelModule(apiVersion, kind) {
  if (apiVersion === "monitoring.coreos.com/v1") {
    return `@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/${kind}`;
  }
  return `kubernetes-models/${apiVersion}/${kind}`;
}

// CRD schemas: "group/version Kind" -> ajv validator.
function strictSchema(schema) {
  if (Array.isArray(schema)) return schema.map(strictSchema);
  if (schema === null || typeof schema !== "object") return schema;
  const out = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key.startsWith("x-kubernetes-")) continue;
    out[key] = key === "properties"
      ? Object.fromEntries(Object.entries(value).map(([k, v]) => [k, strictSchema(v)]))
      : strictSchema(value);
  }
  if (out.type === "object" && out.properties && out.additionalProperties === undefined) {
    out.additionalProperties = false;
  }
  return out;
}
const ajv = new Ajv({ allErrors: true, strict: false });
ajv.addFormat("int32", { type: "number", validate: (n) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
ajv.addFormat("int64", { type: "number", validate: (n) => Number.isInteger(n) });
ajv.addFormat("date-time", () => true);
const crdValidators = new Map();
for (const name of fs.readdirSync(crdDir).filter((f) => /\.ya?ml$/.test(f)).sort()) {
  const crd = YAML.parse(fs.readFileSync(path.join(crdDir, name), "utf8"));
  for (const version of crd.spec.versions) {
    const schema = strictSchema(version.schema.openAPIV3Schema);
    // metadata is validated by the API server's ObjectMeta, not the CRD.
    schema.properties.metadata = { type: "object" };
    crdValidators.set(`${crd.spec.group}/${version.name} ${crd.spec.names.kind}`, ajv.compile(schema));
  }
}

const problems = [];
let checked = 0;
const tsSources = []; // {file, doc, where, name, source}

function where(file, doc) {
  return `${path.basename(file)}: ${doc.kind}/${doc.metadata?.name ?? "?"}`;
}

for (const file of files) {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, "utf8"));
  const objects = [];
  for (const parsed of docs) {
    if (parsed.errors.length) {
      problems.push(`${path.basename(file)}: YAML: ${parsed.errors.map((e) => e.message).join("; ")}`);
      continue;
    }
    const doc = parsed.toJS();
    if (doc === null || doc === undefined) continue;
    checked++;
    objects.push(doc);
    const at = where(file, doc);
    if (!doc.apiVersion || !doc.kind || !doc.metadata?.name) {
      problems.push(`${at}: apiVersion, kind and metadata.name are required`);
      continue;
    }
    const crd = crdValidators.get(`${doc.apiVersion} ${doc.kind}`);
    if (crd) {
      if (!crd(doc)) {
        for (const e of crd.errors) {
          const extra = e.params?.additionalProperty ? ` (${e.params.additionalProperty})` : "";
          problems.push(`${at}: ${e.instancePath || "/"} ${e.message}${extra}`);
        }
      }
      continue;
    }
    const module = modelModule(doc.apiVersion, doc.kind);
    let Model;
    try {
      Model = require(module)[doc.kind];
    } catch {
      problems.push(`${at}: no schema for ${doc.apiVersion} ${doc.kind}`);
      continue;
    }
    try {
      new Model(doc).validate();
    } catch (e) {
      problems.push(`${at}: ${e.message}`);
    }
    tsSources.push({ at, module, kind: doc.kind, doc });
  }
  checkReferences(file, objects);
  if (configsOut) writeConfigs(file, objects);
}

// Unknown fields: one TypeScript program over every document.
if (tsSources.length) {
  const scratch = fs.mkdtempSync(path.join(nodeDir, ".check-"));
  try {
    const lines = [];
    const owners = []; // line index -> document
    tsSources.forEach((s, i) => {
      lines.push(`import type { I${s.kind} as T${i} } from ${JSON.stringify(s.module)};`);
    });
    tsSources.forEach((s, i) => {
      const body = `export const d${i}: T${i} = ${JSON.stringify(s.doc, null, 1)};`.split("\n");
      for (let k = 0; k < body.length; k++) owners[lines.length + k] = s;
      lines.push(...body);
    });
    const source = path.join(scratch, "manifests.ts");
    fs.writeFileSync(source, lines.join("\n") + "\n");
    const program = ts.createProgram([source], {
      noEmit: true, strict: true, skipLibCheck: true, types: [],
      module: ts.ModuleKind.Node16, moduleResolution: ts.ModuleResolutionKind.Node16,
    });
    for (const d of ts.getPreEmitDiagnostics(program)) {
      if (!d.file || d.file.fileName !== source) {
        problems.push(`typescript: ${ts.flattenDiagnosticMessageText(d.messageText, " ")}`);
        continue;
      }
      const { line } = d.file.getLineAndCharacterOfPosition(d.start);
      const owner = owners[line];
      problems.push(`${owner ? owner.at : "?"}: ${jsonPath(d.file, d.start)}: ` +
        ts.flattenDiagnosticMessageText(d.messageText, " "));
    }
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

// The JSON path of the property at `pos` in a generated `export const dN: T = {...}`.
function jsonPath(sourceFile, pos) {
  const parts = [];
  let node = findNode(sourceFile, pos);
  while (node && !ts.isVariableDeclaration(node)) {
    const parent = node.parent;
    if (ts.isPropertyAssignment(node)) parts.unshift(node.name.text);
    else if (parent && ts.isArrayLiteralExpression(parent)) parts.unshift(String(parent.elements.indexOf(node)));
    node = parent;
  }
  return "/" + parts.join("/");
}
function findNode(node, pos) {
  for (const child of node.getChildren()) {
    if (child.getStart() <= pos && pos < child.getEnd()) return findNode(child, pos);
  }
  return node;
}

function matches(selector, labels) {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

function checkReferences(file, objects) {
  const byKind = (kind) => objects.filter((o) => o.kind === kind);
  const named = (kind, name) => objects.find((o) => o.kind === kind && o.metadata?.name === name);
  const deployments = byKind("Deployment");
  const podsOf = (selector) => deployments.filter((d) => matches(selector, d.spec.template.metadata?.labels));
  const portNames = (d) => new Set(d.spec.template.spec.containers.flatMap((c) => (c.ports ?? []).map((p) => p.name)));
  const portNumbers = (d) => new Set(d.spec.template.spec.containers.flatMap((c) => (c.ports ?? []).map((p) => p.containerPort)));
  const fail = (o, msg) => problems.push(`${where(file, o)}: ${msg}`);

  for (const d of deployments) {
    if (!matches(d.spec.selector?.matchLabels, d.spec.template.metadata?.labels)) {
      fail(d, "spec.selector does not match the pod template's labels");
    }
    const spec = d.spec.template.spec;
    const volumes = new Set((spec.volumes ?? []).map((v) => v.name));
    for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
      for (const m of c.volumeMounts ?? []) {
        if (!volumes.has(m.name)) fail(d, `container ${c.name} mounts volume ${m.name}, which is not defined`);
      }
      for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) {
        const port = c[probe]?.httpGet?.port ?? c[probe]?.tcpSocket?.port;
        if (typeof port === "string" && !portNames(d).has(port)) fail(d, `${probe} names port ${port}, which the pod lacks`);
        const grpc = c[probe]?.grpc?.port;
        if (grpc !== undefined && !portNumbers(d).has(grpc)) fail(d, `${probe} uses gRPC port ${grpc}, which the pod lacks`);
      }
      const drainArg = (c.args ?? []).find((a) => a.startsWith("--drain-timeout="));
      if (drainArg) {
        const drain = Number(drainArg.split("=")[1]);
        const sleep = c.lifecycle?.preStop?.exec?.command?.[0] === "sleep" ? Number(c.lifecycle.preStop.exec.command[1]) : 0;
        const grace = spec.terminationGracePeriodSeconds ?? 30;
        if (!(grace > drain + sleep)) {
          fail(d, `terminationGracePeriodSeconds ${grace} is not longer than preStop ${sleep}s + drain ${drain}s`);
        }
      }
    }
    if (spec.serviceAccountName && !named("ServiceAccount", spec.serviceAccountName)) {
      fail(d, `serviceAccountName ${spec.serviceAccountName} is not rendered`);
    }
    for (const v of spec.volumes ?? []) {
      if (v.configMap && !named("ConfigMap", v.configMap.name)) fail(d, `volume ${v.name}: ConfigMap ${v.configMap.name} is not rendered`);
      if (v.secret && !named("Secret", v.secret.secretName) && !externalSecrets.has(v.secret.secretName)) {
        fail(d, `volume ${v.name}: Secret ${v.secret.secretName} is not rendered`);
      }
    }
  }
  for (const s of byKind("Service")) {
    const pods = podsOf(s.spec.selector);
    if (pods.length !== 1) {
      fail(s, `selects ${pods.length} rendered Deployments, expected 1`);
      continue;
    }
    for (const p of s.spec.ports ?? []) {
      const target = p.targetPort ?? p.port;
      if (typeof target === "string" ? !portNames(pods[0]).has(target) : !portNumbers(pods[0]).has(target)) {
        fail(s, `port ${p.name} targets ${target}, which Deployment ${pods[0].metadata.name} does not expose`);
      }
    }
  }
  for (const p of byKind("PodDisruptionBudget")) {
    if (podsOf(p.spec.selector?.matchLabels).length !== 1) fail(p, "does not select exactly one rendered Deployment");
  }
  for (const m of byKind("ServiceMonitor")) {
    const services = byKind("Service").filter((s) => matches(m.spec.selector?.matchLabels, s.metadata.labels));
    if (services.length !== 1) {
      fail(m, `selects ${services.length} rendered Services, expected 1`);
      continue;
    }
    for (const e of m.spec.endpoints ?? []) {
      if (!(services[0].spec.ports ?? []).some((p) => p.name === e.port)) {
        fail(m, `endpoint port ${e.port} is not a port of Service ${services[0].metadata.name}`);
      }
    }
  }
  for (const h of byKind("HorizontalPodAutoscaler")) {
    const target = named(h.spec.scaleTargetRef.kind, h.spec.scaleTargetRef.name);
    if (!target) fail(h, `scaleTargetRef ${h.spec.scaleTargetRef.kind}/${h.spec.scaleTargetRef.name} is not rendered`);
    else if (target.spec.replicas !== undefined) fail(h, `${target.metadata.name} sets spec.replicas, which fights the autoscaler`);
  }
  for (const b of byKind("RoleBinding")) {
    if (!named(b.roleRef.kind, b.roleRef.name)) fail(b, `roleRef ${b.roleRef.kind}/${b.roleRef.name} is not rendered`);
    for (const s of b.subjects ?? []) {
      if (s.kind === "ServiceAccount" && !named("ServiceAccount", s.name)) fail(b, `subject ServiceAccount ${s.name} is not rendered`);
    }
  }
  for (const pool of byKind("InferencePool")) {
    const pods = podsOf(pool.spec.selector?.matchLabels);
    if (pods.length !== 1) fail(pool, `selects ${pods.length} rendered Deployments, expected 1`);
    for (const p of pool.spec.targetPorts ?? []) {
      if (pods[0] && !portNumbers(pods[0]).has(p.number)) fail(pool, `target port ${p.number} is not a port of the selected pods`);
    }
    const ref = pool.spec.endpointPickerRef;
    const svc = named("Service", ref.name);
    if (!svc) fail(pool, `endpointPickerRef names Service ${ref.name}, which is not rendered`);
    else if (!(svc.spec.ports ?? []).some((p) => p.port === ref.port?.number)) {
      fail(pool, `endpoint picker Service ${ref.name} has no port ${ref.port?.number}`);
    }
  }
}

function writeConfigs(file, objects) {
  fs.mkdirSync(configsOut, { recursive: true });
  for (const s of objects.filter((o) => o.kind === "Secret")) {
    for (const [key, value] of Object.entries(s.stringData ?? {})) {
      let parsed;
      try {
        parsed = JSON.parse(value);
      } catch {
        continue;
      }
      if (parsed && typeof parsed === "object" && ("listen" in parsed || "models" in parsed)) {
        const name = `${path.basename(file).replace(/\.ya?ml$/, "")}--${s.metadata.name}--${key}`;
        fs.writeFileSync(path.join(configsOut, name), value);
      }
    }
  }
}

for (const p of problems) console.log(`FAIL: ${p}`);
console.log(`manifests: ${checked} documents in ${files.length} files, ${problems.length} problems`);
process.exit(problems.length ? 1 : 0);

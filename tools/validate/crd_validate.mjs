// Validates Prometheus Operator objects (ServiceMonitor, PrometheusRule) against their CRD
// schemas, offline: @kubernetes-models/prometheus-operator (npm, pinned in package.json) ships
// ajv validators generated from prometheus-operator's API types, the source of its CRDs.
// Checks types, enums, patterns (durations…) and required fields; like the CRDs' structural
// schemas it does not reject unknown fields (check_deploy.py checks the fields that matter).
// Usage: node tools/validate/crd_validate.mjs objects.json   (a JSON array of objects)
// Exit 0 all valid, 1 otherwise (an object of any other kind counts as invalid: no schema).
import { readFileSync } from "node:fs";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";

const MODELS = {
  "monitoring.coreos.com/v1/ServiceMonitor": ServiceMonitor,
  "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule,
};

const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failed = 0;
for (const obj of objects) {
  const id = `${obj.kind}/${obj.metadata?.name}`;
  const Model = MODELS[`${obj.apiVersion}/${obj.kind}`];
  if (!Model) {
    console.log(`FAIL ${id}: no CRD schema for ${obj.apiVersion} ${obj.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(obj).validate();
    console.log(`ok   ${id} (${obj.apiVersion} CRD schema)`);
  } catch (e) {
    console.log(`FAIL ${id}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);

"""Cross-object checks of a rendered k8s/ overlay that schema validation cannot see.

Used by check_deploy.py (make validate-deploy). `check(objs, overlay, settings, external)`
returns a list of (ok: bool, message). Every rule below comes from a decision documented in
k8s/README.md: selectors that select, named ports that exist, references that resolve, the
drain fitting in the grace period, the hardening every gateway pod must have.
"""

import re

GATEWAY = "switchboard"


def _int(s):
    return int(s) if str(s).isdigit() else None


def _matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check(objs, overlay, settings, external):
    """objs: rendered objects; settings: SWITCHBOARD_* names the README documents;
    external: {(kind, name)} that the overlay expects to exist in the cluster already."""
    res = []

    def expect(cond, msg):
        res.append((bool(cond), f"{overlay}: {msg}"))
        return bool(cond)

    by = {}
    for o in objs:
        by.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    dep = by.get("Deployment", {}).get(GATEWAY)
    if not expect(dep, "Deployment switchboard exists"):
        return res
    ns = {o["metadata"].get("namespace") for o in objs if o["kind"] != "Namespace"}
    namespaces = set(by.get("Namespace", {}))
    expect(len(ns) == 1 and None not in ns and ns <= namespaces,
           f"every object in the overlay's own namespace {sorted(map(str, ns))} (Namespace {sorted(namespaces)})")

    spec = dep["spec"]
    pod = spec["template"]["spec"]
    labels = spec["template"]["metadata"].get("labels", {})
    expect(_matches(spec["selector"]["matchLabels"], labels), "Deployment selector matches its pod labels")
    gw = [c for c in pod["containers"] if c["name"] == GATEWAY]
    if not expect(len(gw) == 1, "one container named switchboard"):
        return res
    c = gw[0]
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    expect(ports == {"public": 8080, "internal": 9090}, f"container ports public=8080 internal=9090 ({ports})")

    # Hardening.
    psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    expect(psc.get("runAsNonRoot") is True and isinstance(uid, int) and uid > 0,
           f"runAsNonRoot with a numeric non-zero UID ({uid})")
    expect(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "seccomp RuntimeDefault")
    expect(csc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem")
    expect(csc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
    expect(csc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities drop ALL")
    expect(pod.get("automountServiceAccountToken") is False, "no service account token mounted")
    expect(pod.get("enableServiceLinks") is False, "enableServiceLinks false (no SWITCHBOARD_* service env)")
    expect(":" in c["image"] and not c["image"].endswith(":latest"), f"image pinned to a tag ({c['image']})")

    # Probes on the internal port.
    rp, lp = c.get("readinessProbe", {}).get("httpGet", {}), c.get("livenessProbe", {}).get("httpGet", {})
    expect(rp.get("path") == "/readyz" and rp.get("port") == "internal", "readinessProbe GET /readyz on internal")
    expect(lp.get("path") == "/healthz" and lp.get("port") == "internal", "livenessProbe GET /healthz on internal")

    # Node id from the pod name.
    env = {e["name"]: e for e in c.get("env", [])}
    nid = env.get("SWITCHBOARD_NODE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    expect(nid == "metadata.name", "SWITCHBOARD_NODE_ID from metadata.name")

    # envFrom references resolve; the settings they carry are documented ones.
    values = {}
    for ef in c.get("envFrom", []):
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key not in ef:
                continue
            name = ef[key]["name"]
            obj = by.get(kind, {}).get(name)
            if (kind, name) in external:
                expect(obj is None, f"{kind} {name} is managed outside the overlay")
                continue
            if expect(obj, f"envFrom {kind} {name} exists in the render"):
                values.update(obj.get("data", {}))
    names = set(values) | set(env)
    unknown = sorted(n for n in names if n not in settings)
    expect(not unknown, f"every SWITCHBOARD_* variable is a documented setting (unknown: {unknown})")
    if ("Secret", "switchboard-secrets") not in external:
        need = {"SWITCHBOARD_REDIS_URL", "SWITCHBOARD_JWT_SECRET", "SWITCHBOARD_API_KEY"}
        expect(need <= names, f"Redis URL, JWT secret and API key are set ({sorted(need - names)} missing)")

    # Drain fits in the grace period.
    drain = _int(values.get("SWITCHBOARD_DRAIN_SECONDS", "10"))
    pre = c.get("lifecycle", {}).get("preStop", {})
    pre_s = pre.get("sleep", {}).get("seconds", 0)
    expect(not pre or set(pre) == {"sleep"}, "preStop is the kubelet sleep action (no exec: no shell in the image)")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    expect(drain is not None and grace > pre_s + drain,
           f"terminationGracePeriodSeconds {grace} > preStop {pre_s} + drain {drain}")

    # Rolling update without a capacity dip; the HPA owns the replica count.
    ru = spec.get("strategy", {}).get("rollingUpdate", {})
    expect(ru.get("maxUnavailable") == 0 and ru.get("maxSurge") == 1, "rollingUpdate maxSurge 1, maxUnavailable 0")
    hpas = [h for h in by.get("HorizontalPodAutoscaler", {}).values()
            if h["spec"]["scaleTargetRef"].get("kind") == "Deployment"
            and h["spec"]["scaleTargetRef"].get("name") == GATEWAY]
    if expect(len(hpas) == 1, "one HPA targets Deployment switchboard"):
        h = hpas[0]["spec"]
        expect("replicas" not in spec, "Deployment has no replicas field (the HPA owns it)")
        expect(h.get("minReplicas", 1) >= 3 and h["maxReplicas"] >= h["minReplicas"],
               f"HPA minReplicas {h.get('minReplicas')} >= 3, maxReplicas {h['maxReplicas']}")
        pods_metrics = [m["pods"]["metric"]["name"] for m in h.get("metrics", []) if m["type"] == "Pods"]
        expect(pods_metrics == ["switchboard_connections"], f"HPA Pods metric switchboard_connections ({pods_metrics})")
        expect(any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in h.get("metrics", [])),
               "HPA CPU utilization metric")
        expect("cpu" in c.get("resources", {}).get("requests", {}), "CPU request set (HPA utilization needs it)")
        down = h.get("behavior", {}).get("scaleDown", {})
        expect(down.get("stabilizationWindowSeconds", 300) >= 300, "HPA scales down slowly (>= 5 min window)")

    # PDB.
    pdbs = list(by.get("PodDisruptionBudget", {}).values())
    expect(len(pdbs) == 1 and _matches(pdbs[0]["spec"]["selector"]["matchLabels"], labels)
           and pdbs[0]["spec"].get("maxUnavailable") == 1, "PDB maxUnavailable 1 selects the gateway pods")

    # Services.
    svcs = {n: s for n, s in by.get("Service", {}).items() if _matches(s["spec"].get("selector"), labels)}
    for name, port in (("switchboard", "public"), ("switchboard-internal", "internal")):
        s = svcs.get(name)
        if expect(s, f"Service {name} selects the gateway pods"):
            sp = s["spec"]["ports"]
            expect(len(sp) == 1 and sp[0]["name"] == port and sp[0]["targetPort"] == port
                   and sp[0]["port"] == ports.get(port), f"Service {name} exposes only {port} ({ports.get(port)})")

    # ServiceMonitor: selects the internal Service only, scrapes /metrics on its port.
    for sm in by.get("ServiceMonitor", {}).values():
        sel = sm["spec"]["selector"].get("matchLabels", {})
        picked = sorted(n for n, s in by.get("Service", {}).items() if _matches(sel, s["metadata"].get("labels", {})))
        expect(picked == ["switchboard-internal"], f"ServiceMonitor selects only switchboard-internal ({picked})")
        eps = sm["spec"]["endpoints"]
        expect(all(e.get("port") == "internal" and e.get("path", "/metrics") == "/metrics" for e in eps),
               "ServiceMonitor scrapes port internal /metrics")
    expect(by.get("ServiceMonitor"), "a ServiceMonitor exists")
    expect(by.get("PrometheusRule"), "a PrometheusRule exists (k8s/base/prometheusrule.yaml)")

    # NetworkPolicy: selects the pods, names only existing ports.
    for np in by.get("NetworkPolicy", {}).values():
        s = np["spec"]
        if not _matches(s["podSelector"].get("matchLabels"), labels):
            continue
        expect(set(s.get("policyTypes", [])) == {"Ingress", "Egress"}, "NetworkPolicy restricts ingress and egress")
        named = {p["port"] for r in s.get("ingress", []) for p in r.get("ports", []) if isinstance(p["port"], str)}
        expect(named and named <= set(ports), f"NetworkPolicy ingress ports are container port names ({sorted(named)})")
        public_from = [r["from"] for r in s.get("ingress", []) if any(p["port"] == "public" for p in r.get("ports", []))]
        expect(public_from and all(len(f) == 1 and "namespaceSelector" in f[0] for f in public_from),
               "public port reachable only from the ingress controller's namespace")
        dns = any(p.get("port") == 53 for r in s.get("egress", []) for p in r.get("ports", []))
        redis = any(p.get("port") == 6379 for r in s.get("egress", []) for p in r.get("ports", []))
        expect(dns and redis, "NetworkPolicy egress allows DNS and Redis")
    expect(any(_matches(n["spec"]["podSelector"].get("matchLabels"), labels)
               for n in by.get("NetworkPolicy", {}).values()), "a NetworkPolicy selects the gateway pods")

    # Ingress: routes /ws to the public port, with WebSocket-friendly timeouts.
    heartbeat = int(values.get("SWITCHBOARD_HEARTBEAT_MS", "25000"))
    for ing in by.get("Ingress", {}).values():
        ann = ing["metadata"].get("annotations", {})
        for key in ("proxy-read-timeout", "proxy-send-timeout"):
            v = ann.get(f"nginx.ingress.kubernetes.io/{key}", "60")
            expect(v.isdigit() and int(v) * 1000 > 2 * heartbeat, f"Ingress {key} {v}s > 2 x heartbeat")
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                b = p["backend"]["service"]
                svc = by.get("Service", {}).get(b["name"])
                names = {sp["name"] for sp in svc["spec"]["ports"]} if svc else set()
                expect(b["name"] == "switchboard" and b["port"].get("name") in names,
                       f"Ingress {rule.get('host')}{p['path']} -> Service {b['name']} port {b['port']}")
    expect(by.get("Ingress"), "an Ingress exists")
    return res


def adapter_rule_metrics(rules):
    """Metric names a prometheus-adapter rule list serves (name.as, else the series name)."""
    out = []
    for r in rules:
        m = re.match(r"\s*([a-zA-Z_:][a-zA-Z0-9_:]*)", r.get("seriesQuery", ""))
        series = m.group(1) if m else ""
        name = r.get("name", {})
        out.append(name.get("as") or series)
        if name.get("matches") and not re.search(name["matches"], series):
            out[-1] = None
    return out

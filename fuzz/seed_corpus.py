#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from the hostile-input fixtures.

Run from anywhere; then minimise with `cargo fuzz cmin <target>` (see
README.md). Seeds are named by content hash, as libFuzzer names its own.
"""
import hashlib
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def put(target, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def files(rel, suffix):
    d = os.path.join(ROOT, rel)
    for name in sorted(os.listdir(d)):
        if name.endswith(suffix):
            yield name, os.path.join(d, name)


# net-conf.json: every input fixture.
for name, path in files("crates/weft-core/tests/fixtures/netconf", ".json"):
    if not name.endswith(".expected.json"):
        put("netconf", open(path, "rb").read())

# Leases: key, newline, value (the .lease file without its expectation line).
for name, path in files("crates/weft-core/tests/fixtures/hostile/leases", ".lease"):
    data = open(path, "rb").read()
    key, rest = data.split(b"\n", 1)
    put("lease", key + b"\n" + rest.split(b"\n", 1)[1])

# subnet.env: what the agent writes, what people write, and the CNI
# fixtures' broken ones.
put("subnet_env", open(os.path.join(ROOT, "crates/weft-cni/tests/golden/subnet-env-hostgw.txt"), "rb").read())
for text in [
    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.6.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\n"
    "FLANNEL_IPV6_SUBNET=fd00:10:244:5::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n",
    "# by hand\n\nexport FLANNEL_NETWORK=\"10.244.0.0/16,10.245.0.0/16\"\nFLANNEL_SUBNET='10.244.6.1/24'\nOTHER=x\n",
    "FLANNEL_IPV6_NETWORK=fd00::/56\r\nFLANNEL_IPV6_SUBNET=fd00:0:0:7::1/64\r\nFLANNEL_MTU=1280\r\n",
]:
    put("subnet_env", text.encode())
for name, path in files("crates/weft-cni/tests/fixtures/hostile", ".json"):
    f = json.load(open(path))
    if "subnet_env" in f:
        put("subnet_env", f["subnet_env"].encode())

# CNI: command byte, saved-file byte, then stdin as the hostile test builds it.
COMMANDS = ["ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION"]
GOOD = {"cniVersion": "1.0.0", "name": "cbr0", "type": "flannel",
        "subnetFile": "/run/flannel/subnet.env", "dataDir": "/var/lib/cni/flannel"}


def expand(v):
    if isinstance(v, dict) and "$repeat" in v:
        return v["$repeat"] * v["times"]
    if isinstance(v, dict):
        return {k: expand(x) for k, x in v.items()}
    if isinstance(v, list):
        return [expand(x) for x in v]
    return v


def cni_stdin(f, d):
    if "stdin" in f:
        return f["stdin"].replace("@DIR@", "/tmp/weft").encode()
    if "stdin_file" in f:
        return open(os.path.join(d, f["stdin_file"]), "rb").read()
    if "stdin_repeat" in f:
        r = f["stdin_repeat"]
        # Shortened: libFuzzer's -max_len caps inputs anyway.
        return (r["prefix"] + r["repeat"] * min(r["times"], 2000) + r["suffix"]).encode()
    conf = dict(GOOD)
    for k, v in f.get("conf", {}).items():
        if v is None:
            conf.pop(k, None)
        else:
            v = expand(v)
            if isinstance(v, str) and len(v) > 2000:
                v = v[:2000]
            conf[k] = v.replace("@DIR@", "/tmp/weft") if isinstance(v, str) else v
    return json.dumps(conf).encode()


d = os.path.join(ROOT, "crates/weft-cni/tests/fixtures/hostile")
for name, path in files("crates/weft-cni/tests/fixtures/hostile", ".json"):
    f = json.load(open(path))
    command = (f.get("env") or {}).get("CNI_COMMAND") or "ADD"
    c = COMMANDS.index(command) if command in COMMANDS else 0
    put("cni_stdin", bytes([c, 0]) + cni_stdin(f, d))
for c in range(len(COMMANDS)):
    for saved in range(4):
        put("cni_stdin", bytes([c, saved]) + json.dumps(dict(GOOD, cniVersion="1.1.0")).encode())

# Annotations: cluster line, then name=value lines, from the kube fixtures.
P = "flannel.alpha.coreos.com/"
for i, (name, path) in enumerate(files("crates/weft-store/tests/fixtures/kube_hostile", ".json")):
    f = json.load(open(path))
    dual = f["cluster"] == "dual"
    n = 100 + i
    a = {"backend-data": '{"VNI":1,"VtepMAC":"02:42:c6:33:64:%02x"}' % n, "backend-type": "vxlan",
         "public-ip": "198.51.100.%d" % n}
    cidrs = ["10.244.%d.0/24" % n]
    if dual:
        a["backend-v6-data"] = '{"VNI":1,"VtepMAC":"02:42:c6:33:65:%02x"}' % n
        a["public-ipv6"] = "2001:db8::%x" % n
        cidrs.append("fd00:10:244:%x::/64" % n)
    for k, v in (f.get("annotations") or {}).items():
        if not k.startswith(P):
            continue
        k = k[len(P):]
        if v is None:
            a.pop(k, None)
        elif isinstance(v, dict):
            a[k] = v["repeat"] * min(v["times"], 4200)
        else:
            a[k] = v
    cidrs = f.get("podCIDRs", cidrs)
    lines = ["dual" if dual else "v4"]
    if cidrs:
        lines.append("podCIDRs=" + ",".join(cidrs))
    lines += ["%s=%s" % kv for kv in sorted(a.items()) if "\n" not in kv[1]]
    put("annotations", "\n".join(lines).encode())
wg = 'wg\npodCIDRs=10.244.9.0/24\npublic-ip=198.51.100.9\nbackend-type=wireguard\nbackend-data={"PublicKey":"BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=","Port":51820}'
put("annotations", wg.encode())

# Userspace WireGuard's offload paths: TCP packets as a pod sends them
# (gso: virtio-net header + TSO super-packet, or a single packet whose
# checksum is left to the device) and as they arrive decrypted (gro: a batch
# of consecutive segments of one flow, each after its 2-byte length).
import struct


def tcp4(seq, payload, flags=0x10):
    tcp = struct.pack("!HHIIBBHHH", 40000, 5201, seq, 1, 5 << 4, flags, 65535, 0, 0)
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, 6, 0,
                     bytes([10, 244, 1, 2]), bytes([10, 244, 2, 2]))
    return ip + tcp + payload


def vnet(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset):
    return struct.pack("=BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


put("gso", vnet(1, 1, 40, 1400, 20, 16) + tcp4(1, bytes(range(256)) * 16))
put("gso", vnet(1, 0, 0, 0, 20, 16) + tcp4(1, b"hello"))
put("gso", vnet(0, 0, 0, 0, 0, 0) + tcp4(7, b""))
segments = [tcp4(1 + 1000 * i, bytes([i]) * 1000) for i in range(4)]
put("gro", b"".join(struct.pack("!H", len(p)) + p for p in segments))
put("gro", struct.pack("!H", 5) + b"\x45\x00\x00\x05\x00")

for t in sorted(os.listdir(CORPUS)):
    print(t, len(os.listdir(os.path.join(CORPUS, t))))

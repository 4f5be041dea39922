#!/usr/bin/python3
"""Builds DNSSEC-signed test zones that libunbound serves with no network.

    mkzone.py OUTDIR ZONE=ZONEFILE [ZONE=ZONEFILE ...]

For each zone: fresh ECDSA P-256 keys (ldns-keygen), signed with NSEC
(ldns-signzone; NSEC3 made NXDOMAIN proofs bogus in zones with empty
non-terminals), valid until 2060 (RRSIG times are serial numbers: at most 68 years ahead). Writes:

    OUTDIR/<zone>.signed   the signed zone
    OUTDIR/trust-anchors   the DS record of every zone (filtermail_trust_anchor)
    OUTDIR/unbound.conf    auth-zone entries (filtermail_unbound_config)

A record whose line ends in ";BOGUS" is altered after signing, so its RRSIG
no longer matches: libunbound must report it as bogus. A record ending in
";UNSIGNED" has its RRSIG removed (also bogus in a signed zone).
"""
import os
import re
import subprocess
import sys


def run(args, cwd):
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


def tamper(rdata):
    """Changes record data without breaking its syntax."""
    m = re.search(r'"([^"]*)"', rdata)
    if m:
        return rdata[:m.start(1)] + m.group(1) + "X" + rdata[m.end(1):]
    m = re.search(r'(\d+)\.(\d+)\.(\d+)\.(\d+)\s*$', rdata)
    if m:
        last = (int(m.group(4)) + 1) % 256
        return rdata[:m.start(4)] + str(last)
    return rdata + "X"


def make_zone(outdir, zone, zonefile):
    zone = zone.rstrip(".") + "."
    bogus, unsigned = set(), set()
    lines = []
    with open(zonefile) as f:
        for line in f:
            stripped = line.rstrip("\n")
            for marker, where in ((";BOGUS", bogus), (";UNSIGNED", unsigned)):
                if stripped.rstrip().endswith(marker):
                    stripped = stripped.rstrip()[: -len(marker)]
                    owner = stripped.split()[0]
                    rtype = [t for t in stripped.split()[1:4] if t.isupper() and t != "IN"][0]
                    fq = owner if owner.endswith(".") else (
                        zone if owner == "@" else owner + "." + zone)
                    where.add((fq.lower(), rtype))
            lines.append(stripped + "\n")
    src = os.path.join(outdir, zone + "zone")
    with open(src, "w") as f:
        f.write("$ORIGIN %s\n$TTL 300\n" % zone)
        f.writelines(lines)
    ksk = run(["ldns-keygen", "-a", "ECDSAP256SHA256", "-k", zone], outdir)
    zsk = run(["ldns-keygen", "-a", "ECDSAP256SHA256", zone], outdir)
    run(["ldns-signzone", "-e", "20600101000000", "-f", zone + "signed", zone + "zone", ksk,
         zsk], outdir)
    ds = run(["ldns-key2ds", "-n", "-2", ksk + ".key"], outdir)
    signed = os.path.join(outdir, zone + "signed")
    if bogus or unsigned:
        out = []
        with open(signed) as f:
            for line in f:
                fields = line.split(None, 4)
                if len(fields) == 5:
                    owner, ttl, cls, rtype, rdata = fields
                    key = (owner.lower(), rtype)
                    if key in bogus:
                        line = "\t".join([owner, ttl, cls, rtype, tamper(rdata.rstrip("\n"))]) + "\n"
                    if rtype == "RRSIG" and (owner.lower(), rdata.split()[0]) in unsigned:
                        continue
                out.append(line)
        with open(signed, "w") as f:
            f.writelines(out)
    return zone, signed, ds


def main():
    outdir = os.path.abspath(sys.argv[1])
    os.makedirs(outdir, exist_ok=True)
    anchors, conf = [], ["server:\n", '  module-config: "validator iterator"\n',
                         "  cache-max-negative-ttl: 0\n", "  val-log-level: 0\n"]
    zones = []
    for arg in sys.argv[2:]:
        zone, zonefile = arg.split("=", 1)
        zones.append(make_zone(outdir, zone, zonefile))
    # unbound refuses some special-use names (test., invalid.) unless told.
    for zone, _, _ in zones:
        tld = zone.rstrip(".").split(".")[-1]
        if tld in ("test", "invalid", "localhost", "example", "local", "onion"):
            line = '  local-zone: "%s." nodefault\n' % tld
            if line not in conf:
                conf.append(line)
    for zone, signed, ds in zones:
        anchors.append(ds + "\n")
        conf += ["auth-zone:\n", '  name: "%s"\n' % zone, '  zonefile: "%s"\n' % signed,
                 "  for-upstream: yes\n", "  for-downstream: no\n", "  fallback-enabled: no\n"]
    with open(os.path.join(outdir, "trust-anchors"), "w") as f:
        f.writelines(anchors)
    with open(os.path.join(outdir, "unbound.conf"), "w") as f:
        f.writelines(conf)


if __name__ == "__main__":
    main()

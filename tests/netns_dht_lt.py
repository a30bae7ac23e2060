#!/usr/bin/python3
"""libtorrent sessions for tests/netns_dht.sh, one per network namespace.

Run with /usr/bin/python3 (Debian's python3-libtorrent exists only there).

  netns_dht_lt.py make FILE TORRENT
      a v1-only torrent of FILE with no trackers, not private, 256 KiB
      pieces; prints "info_hash HEX" and "magnet MAGNET"
  netns_dht_lt.py node --bind IP [--port P] [--bootstrap IP:PORT,...]
      a DHT node (no torrent)
  netns_dht_lt.py seed --bind IP ... --torrent T --save-path DIR
      a DHT node that seeds T (data under DIR) and announces it to the DHT
  netns_dht_lt.py get --bind IP ... --magnet MAGNET --save-path DIR
      a DHT node that downloads MAGNET (no tracker, no peer given: the DHT
      finds the peers); exits 0 once every piece is downloaded and checked

Every session: DHT on (bootstrapped only from --bootstrap), LSD, UPnP,
NAT-PMP, uTP and the IP notifier off, DHT restrictions on same-IP and
same-/24 nodes off, unverified (non-BEP 42) node ids accepted, plain
(unencrypted) outgoing connections, listening on BIND:PORT (TCP and the
DHT's UDP). Nothing else is contacted; --bind and every --bootstrap
address must be in 10.213.0.0/16 (the test's namespaces).

stdout (the test keeps it as the session's log), one line each, flushed:
  LISTEN <port>                         TCP listen socket open
  STATUS t=<s> dht_nodes=<n> ...        every second
  LIVE <ip:port> ...                    the DHT's live nodes, every 5 s
  REBOOTSTRAP <n>                       the table was still empty: bootstrap again
  ANNOUNCE <hash> <ip> <port>           an announce_peer this node stored
  PEERS <n>                             a DHT lookup of the torrent found n peers
  DONE                                  get: complete (then exit 0)
  ALERT <name>: <message>               other alerts worth reading
While its table holds fewer than --fill nodes (default 8) a session looks
up a random target every 2 s (at most 60 times), and while it is empty it
restarts its DHT every 5 s (a new bootstrap from --bootstrap, at most 20
times): libtorrent never keeps a router in its table and refreshes slowly,
so a node that asked its routers before they knew anyone would stay alone.
A one-line status file (--status FILE, written atomically every second)
holds the same fields as the latest STATUS line, for the test to poll.

Runs until SIGTERM/SIGINT or --timeout. Exit codes: 0 ok (get: complete),
2 listen failed or bad arguments, 3 timeout (get), 4 torrent or file error.
"""
import argparse
import ipaddress
import os
import signal
import sys
import threading
import time
import warnings

import libtorrent as lt

# session.status() is deprecated in 2.0 but still the one place for dht_nodes.
warnings.simplefilter("ignore", DeprecationWarning)

NET = ipaddress.ip_network("10.213.0.0/16")


def out(*words):
    print(*words, flush=True)


def check_addr(what, host):
    try:
        ok = ipaddress.ip_address(host) in NET
    except ValueError:
        ok = False
    if not ok:
        sys.stderr.write("netns_dht_lt.py: %s %s is not in %s\n" % (what, host, NET))
        sys.exit(2)


def make(path, torrent):
    fs = lt.file_storage()
    lt.add_files(fs, path)
    ct = lt.create_torrent(fs, 256 * 1024, flags=lt.create_torrent.v1_only)
    ct.set_priv(False)
    ct.set_creator("peerlet netns_dht")
    lt.set_piece_hashes(ct, os.path.dirname(os.path.abspath(path)))
    data = lt.bencode(ct.generate())
    with open(torrent, "wb") as f:
        f.write(data)
    ti = lt.torrent_info(torrent)
    h = str(ti.info_hashes().v1)
    out("info_hash", h)
    out("magnet", "magnet:?xt=urn:btih:%s" % h)


def live_addr(n):
    """"ip:port" of one dht_live_nodes_alert entry."""
    ep = n.get("endpoint") if isinstance(n, dict) else n[1] if isinstance(n, tuple) else n
    if isinstance(ep, tuple):
        return "%s:%d" % ep
    return str(ep)


def settings(a):
    cat = lt.alert.category_t
    mask = (cat.status_notification | cat.error_notification | cat.storage_notification
            | cat.dht_notification | cat.dht_operation_notification)
    return {
        "listen_interfaces": "%s:%d" % (a.bind, a.port),
        "outgoing_interfaces": a.bind,
        "enable_dht": True,
        "dht_bootstrap_nodes": a.bootstrap,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "enable_ip_notifier": False,
        # Every node is in one private /16 and some may share a /24: the
        # default "one node per IP and per /24 in a bucket" rule, the dark
        # internet filter and the BEP 42 preference would thin the table.
        "dht_restrict_routing_ips": False,
        "dht_restrict_search_ips": False,
        "dht_prefer_verified_node_ids": False,
        "dht_ignore_dark_internet": False,
        "dht_enforce_node_id": False,
        # Several lookups of one peerlet node arrive in a burst.
        "dht_block_ratelimit": 1000,
        "dht_upload_rate_limit": 1 << 20,
        "dht_announce_interval": 30,
        # peerlet speaks plain BitTorrent (no MSE): dial unencrypted.
        "out_enc_policy": int(lt.enc_policy.disabled),
        "in_enc_policy": int(lt.enc_policy.enabled),
        "allow_multiple_connections_per_ip": True,
        "user_agent": "peerlet-netns-dht-lt/" + lt.__version__,
        "alert_mask": int(mask),
    }


def run(a):
    check_addr("--bind", a.bind)
    for b in filter(None, a.bootstrap.split(",")):
        check_addr("--bootstrap", b.rsplit(":", 1)[0])

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    ses = lt.session(settings(a))
    h = None
    if a.mode in ("seed", "get"):
        if a.mode == "seed":
            atp = lt.add_torrent_params()
            atp.ti = lt.torrent_info(a.torrent)
            atp.flags |= lt.torrent_flags.seed_mode
        else:
            atp = lt.parse_magnet_uri(a.magnet)
            if atp.trackers:
                sys.stderr.write("netns_dht_lt.py: the magnet names trackers\n")
                sys.exit(2)
        atp.save_path = a.save_path
        atp.flags = (atp.flags | lt.torrent_flags.disable_lsd | lt.torrent_flags.disable_pex) \
            & ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused & ~lt.torrent_flags.disable_dht
        h = ses.add_torrent(atp)

    t0 = time.time()
    rc = 0
    done = False
    announces = 0
    last_status = 0.0
    last_live = time.time()
    last_force = 0.0
    rebootstraps = 0
    lookups = 0
    last_lookup = 0.0
    st_nodes = 0
    tmp_status = a.status + ".tmp" if a.status else None
    while not stop.is_set():
        ses.wait_for_alert(200)
        for al in ses.pop_alerts():
            name = type(al).__name__
            if isinstance(al, lt.listen_succeeded_alert):
                if al.socket_type == lt.socket_type_t.tcp:
                    out("LISTEN", al.port)
                else:
                    out("ALERT %s: %s" % (name, al.message()))
            elif isinstance(al, lt.listen_failed_alert):
                out("ALERT %s: %s" % (name, al.message()))
                rc = 2
                stop.set()
            elif isinstance(al, lt.dht_announce_alert):
                announces += 1
                out("ANNOUNCE", str(al.info_hash), al.ip, al.port)
            elif isinstance(al, lt.dht_reply_alert):
                out("PEERS", al.num_peers)
            elif isinstance(al, lt.dht_live_nodes_alert):
                out("LIVE", " ".join(live_addr(n) for n in al.nodes))
            elif isinstance(al, lt.dht_bootstrap_alert):
                out("ALERT %s: %s" % (name, al.message()))
            elif isinstance(al, (lt.torrent_error_alert, lt.file_error_alert)):
                out("ALERT %s: %s" % (name, al.message()))
                rc = 4
                stop.set()
            elif isinstance(al, lt.torrent_finished_alert) and a.mode == "get":
                done = True
            elif isinstance(al, (lt.dht_get_peers_alert, lt.dht_get_peers_reply_alert,
                                 lt.dht_log_alert, lt.dht_pkt_alert,
                                 lt.dht_outgoing_get_peers_alert, lt.block_finished_alert,
                                 lt.piece_finished_alert, lt.state_update_alert,
                                 lt.dht_stats_alert)):
                pass
            else:
                out("ALERT %s: %s" % (name, al.message()))
        now = time.time()
        if h is not None and now - last_force >= a.reannounce:
            # Announce (and look up) through the DHT now, and again while
            # the test runs: libtorrent would otherwise wait for its timer.
            last_force = now
            h.force_dht_announce()
        if now - last_status >= 1.0:
            last_status = now
            st = ses.status()
            st_nodes = st.dht_nodes
            # A table that is still small grows by lookups: a get_peers walk
            # for a random target (from the routers while the table is
            # empty) adds every node that answers. libtorrent's own refresh
            # would take minutes to get there from one or two nodes.
            if st_nodes < a.fill and lookups < 60 and now - last_lookup >= 2.0:
                lookups += 1
                last_lookup = now
                ses.dht_get_peers(lt.sha1_hash(os.urandom(20)))
            fields = ["t=%.0f" % (now - t0), "dht_nodes=%d" % st.dht_nodes,
                      "dht_node_cache=%d" % st.dht_node_cache,
                      "announces=%d" % announces, "lookups=%d" % lookups,
                      "rebootstraps=%d" % rebootstraps]
            if h is not None:
                ts = h.status()
                fields += ["state=%s" % str(ts.state).split(".")[-1],
                           "progress=%.3f" % ts.progress, "peers=%d" % ts.num_peers,
                           "has_metadata=%d" % int(ts.has_metadata),
                           "downloaded=%d" % ts.total_payload_download,
                           "uploaded=%d" % ts.total_payload_upload]
                if a.mode == "get" and ts.is_finished and ts.has_metadata:
                    done = True
            line = " ".join(fields)
            out("STATUS", line)
            if a.status:
                with open(tmp_status, "w") as f:
                    f.write(line + "\n")
                os.replace(tmp_status, a.status)
        if now - last_live >= 5.0:
            last_live = now
            # The node id changes when libtorrent learns its external IP
            # (BEP 42): read the current one each time.
            st = ses.save_state(lt.save_state_flags_t.save_dht_state)
            # [20-byte id + 4-byte IP, ...], one per listen socket
            nids = (st.get(b"dht state") or {}).get(b"node-id") or []
            if nids and len(nids[0]) >= 20:
                ses.dht_live_nodes(lt.sha1_hash(nids[0][:20]))
            # A node whose table is still empty asks its routers again (a
            # DHT restart: a new bootstrap). libtorrent never puts a router
            # in its table and would wait much longer by itself; a node that
            # asked before the routers knew anyone would stay alone.
            if st_nodes == 0 and a.bootstrap and rebootstraps < 20:
                rebootstraps += 1
                out("REBOOTSTRAP", rebootstraps)
                ses.apply_settings({"enable_dht": False})
                ses.apply_settings({"enable_dht": True})
        if done:
            out("DONE")
            break
        if now - t0 > a.timeout:
            out("TIMEOUT after %.0f s" % a.timeout)
            if a.mode == "get":
                rc = 3
            break
    ses.pause()
    return rc


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
        return 0
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["node", "seed", "get"])
    ap.add_argument("--bind", required=True)
    ap.add_argument("--port", type=int, default=6881)
    ap.add_argument("--bootstrap", default="", help="IP:PORT,IP:PORT,...")
    ap.add_argument("--torrent")
    ap.add_argument("--magnet")
    ap.add_argument("--save-path")
    ap.add_argument("--status", help="file with the latest status line")
    ap.add_argument("--timeout", type=float, default=300.0)
    ap.add_argument("--fill", type=int, default=8,
                    help="look up random targets while the table has fewer nodes")
    ap.add_argument("--reannounce", type=float, default=10.0,
                    help="seconds between forced DHT announces of the torrent")
    a = ap.parse_args()
    if a.mode == "seed" and not (a.torrent and a.save_path):
        ap.error("seed needs --torrent and --save-path")
    if a.mode == "get" and not (a.magnet and a.save_path):
        ap.error("get needs --magnet and --save-path")
    return run(a)


if __name__ == "__main__":
    sys.exit(main())

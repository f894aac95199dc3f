// NATs built from network namespaces and nftables: a client namespace ("lan") behind a router
// namespace that does source NAT towards the host, and a server namespace behind a router that
// does a 1:1 NAT of one public address. Forwarding is turned on inside the routers only; the host
// gets one veth end per topology and nothing else. Everything is removed afterwards, also when
// the process exits or is interrupted.

import { execFileSync } from 'node:child_process';
import { freeSubnet, quiet, removedOnExit, run } from './netns.mjs';

/**
 * What a client router does to a lan client's datagrams leaving towards the host (nft
 * statements on its postrouting chain). `endpoint-independent`: one mapping per lan socket,
 * which keeps the socket's port when it is free (`persistent`); `symmetric`: a random port per
 * new flow (each destination, and again after the mappings are flushed).
 */
export const NAT_TYPES = {
  'endpoint-independent': 'masquerade persistent',
  symmetric: 'masquerade random',
};

/** Why this process cannot build NATs in namespaces, or null (probed in a throwaway namespace). */
export function natUnavailable() {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return 'needs root (creates network namespaces, veth pairs and nftables NAT rules)';
  }
  for (const [tool, arg, pkg] of [['ip', '-V', 'iproute2'], ['nft', '--version', 'nftables'], ['conntrack', '--version', 'conntrack']]) {
    try {
      execFileSync(tool, [arg], { stdio: 'ignore' });
    } catch {
      return `needs \`${tool}\` (Debian package ${pkg})`;
    }
  }
  const probe = `rcnatprobe${process.pid}`;
  try {
    run('ip', 'netns', 'add', probe);
    const inside = (...args) => run('ip', 'netns', 'exec', probe, ...args);
    inside('sysctl', '-qw', 'net.ipv4.ip_forward=1');
    inside('nft', 'add table ip probe');
    inside('nft', 'add chain ip probe post { type nat hook postrouting priority srcnat; }');
    inside('nft', 'add rule ip probe post masquerade random');
    inside('conntrack', '-L');
  } catch (e) {
    return `cannot build a NAT in a network namespace here: ${e.message}`;
  } finally {
    quiet('ip', 'netns', 'del', probe);
  }
  return null;
}

/**
 * A client behind a NAT of `type` (a key of NAT_TYPES): namespace `lan` (192.168.213.2/24,
 * default route to the router) behind namespace `router`, whose `wan` end (the NAT's public
 * address, `publicAddr`) is joined to the host end (`hostAddr`) by a veth pair on a /30 of
 * 10.213.0.0/16. A server on `hostAddr` sees the lan client only from `publicAddr` and the
 * router's mapped ports. Returns `{ lan, router, hostAddr, publicAddr, lanAddr, mappings(),
 * rebind(), destroy() }`.
 */
export function natClient({ tag, type }) {
  const nat = NAT_TYPES[type];
  if (!nat) throw new Error(`unknown NAT type ${type}: one of ${Object.keys(NAT_TYPES).join(', ')}`);
  const t = topology(tag);
  const lanAddr = '192.168.213.2';
  try {
    t.link('lan', t.lan, lanAddr, '192.168.213.1');
    t.router$('nft', `add rule ip ringcast_nat postrouting oifname "wan" ${nat}`);
  } catch (e) {
    t.destroy();
    throw e;
  }
  return {
    lan: t.lan,
    router: t.router,
    hostAddr: t.hostAddr,
    publicAddr: t.publicAddr,
    lanAddr,
    /** The router's UDP mappings: `{ lan, remote, mapped }` addresses as `ip:port`. */
    mappings: () => udpMappings(t.router),
    /**
     * A NAT rebinding: flush the router's connection tracking, so every mapping is forgotten
     * and the next datagram out gets a new one (with `symmetric`, a new random port).
     */
    rebind: () => t.router$('conntrack', '-F'),
    destroy: t.destroy,
  };
}

/**
 * A server behind a 1:1 NAT: namespace `server` (`privateAddr`, 192.168.214.2/24) behind
 * namespace `router`, which maps its public address `publicAddr` (its `wan` end, on a /30 of
 * 10.213.0.0/16 shared with the host end `hostAddr`) to `privateAddr` both ways (dnat in, snat
 * out). Clients on the host reach the server only through `publicAddr`: the host has no route
 * to the private one. Returns `{ server, router, hostAddr, publicAddr, privateAddr, destroy() }`.
 */
export function natServer({ tag }) {
  const t = topology(tag, 'server');
  const privateAddr = '192.168.214.2';
  try {
    t.link('lan', t.lan, privateAddr, '192.168.214.1');
    t.router$('nft', `add chain ip ringcast_nat prerouting { type nat hook prerouting priority dstnat; policy accept; }`);
    t.router$('nft', `add rule ip ringcast_nat prerouting iifname "wan" ip daddr ${t.publicAddr} dnat to ${privateAddr}`);
    t.router$('nft', `add rule ip ringcast_nat postrouting oifname "wan" ip saddr ${privateAddr} snat to ${t.publicAddr}`);
  } catch (e) {
    t.destroy();
    throw e;
  }
  return {
    server: t.lan,
    router: t.router,
    hostAddr: t.hostAddr,
    publicAddr: t.publicAddr,
    privateAddr,
    destroy: t.destroy,
  };
}

// Two namespaces (`ringcast-<tag>-router-<pid>` and `ringcast-<tag>-<inner>-<pid>`), the
// router's wan veth to the host, forwarding on in the router and an empty nft table
// `ringcast_nat` with a postrouting chain; `link` then joins the inner namespace to the router.
function topology(tag, inner = 'lan') {
  const router = `ringcast-${tag}-router-${process.pid}`;
  const lan = `ringcast-${tag}-${inner}-${process.pid}`;
  const ifName = (end) => `rc${tag}${process.pid}${end}`.slice(-15);
  const hostIf = ifName('h');
  const subnet = freeSubnet();
  const hostAddr = `10.213.${subnet}.1`;
  const publicAddr = `10.213.${subnet}.2`;
  // Deleting a namespace deletes its veth ends, and with them their peers (the host's too);
  // its nft rules and conntrack table go with it.
  const destroy = removedOnExit(() => {
    quiet('ip', 'netns', 'del', lan);
    quiet('ip', 'netns', 'del', router);
    quiet('ip', 'link', 'del', hostIf);
  });
  const router$ = (...args) => run('ip', 'netns', 'exec', router, ...args);
  // A veth pair made on the host (unique names), one end moved into `ns` and renamed `name`.
  const veth = (a, b) => run('ip', 'link', 'add', a, 'type', 'veth', 'peer', 'name', b);
  const into = (dev, ns, name) => {
    run('ip', 'link', 'set', dev, 'netns', ns);
    run('ip', '-n', ns, 'link', 'set', dev, 'name', name);
    run('ip', '-n', ns, 'link', 'set', name, 'up');
  };
  try {
    run('ip', 'netns', 'add', router);
    run('ip', 'netns', 'add', lan);
    run('ip', '-n', router, 'link', 'set', 'lo', 'up');
    run('ip', '-n', lan, 'link', 'set', 'lo', 'up');
    veth(hostIf, ifName('w'));
    into(ifName('w'), router, 'wan');
    run('ip', 'addr', 'add', `${hostAddr}/30`, 'dev', hostIf);
    run('ip', 'link', 'set', hostIf, 'up');
    run('ip', '-n', router, 'addr', 'add', `${publicAddr}/30`, 'dev', 'wan');
    // The router's sysctl, not the host's: forwarding is per namespace.
    router$('sysctl', '-qw', 'net.ipv4.ip_forward=1');
    router$('nft', 'add table ip ringcast_nat');
    router$('nft', 'add chain ip ringcast_nat postrouting { type nat hook postrouting priority srcnat; policy accept; }');
  } catch (e) {
    destroy();
    throw e;
  }
  // The inner namespace's link: router end `routerName` with `gateway`/24, inner end `eth0`
  // with `innerAddr`/24 and its default route through the router.
  const link = (routerName, ns, innerAddr, gateway) => {
    veth(ifName('r'), ifName('i'));
    into(ifName('r'), router, routerName);
    into(ifName('i'), ns, 'eth0');
    run('ip', '-n', router, 'addr', 'add', `${gateway}/24`, 'dev', routerName);
    run('ip', '-n', ns, 'addr', 'add', `${innerAddr}/24`, 'dev', 'eth0');
    run('ip', '-n', ns, 'route', 'add', 'default', 'via', gateway);
  };
  return { router, lan, hostAddr, publicAddr, router$, link, destroy };
}

// `conntrack -L` lines such as `udp 17 29 src=192.168.213.2 dst=10.213.7.1 sport=50000
// dport=45000 src=10.213.7.1 dst=10.213.7.2 sport=45000 dport=61234 ...`: the original
// direction's source is the lan socket, the reply direction's destination the mapping.
function udpMappings(router) {
  const out = quiet('ip', 'netns', 'exec', router, 'conntrack', '-L', '-p', 'udp');
  const mappings = [];
  for (const line of out.split('\n')) {
    const src = [...line.matchAll(/src=(\S+)/g)].map((m) => m[1]);
    const dst = [...line.matchAll(/dst=(\S+)/g)].map((m) => m[1]);
    const sport = [...line.matchAll(/sport=(\d+)/g)].map((m) => m[1]);
    const dport = [...line.matchAll(/dport=(\d+)/g)].map((m) => m[1]);
    if (src.length < 2 || dst.length < 2 || sport.length < 2 || dport.length < 2) continue;
    mappings.push({
      lan: `${src[0]}:${sport[0]}`,
      remote: `${dst[0]}:${dport[0]}`,
      mapped: `${dst[1]}:${dport[1]}`,
    });
  }
  return mappings;
}

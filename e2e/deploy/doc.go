// Package deploy tests Herald's life cycle in a full lab exactly as a user
// runs it: images from the lab registry, manifests/ applied by server-side
// apply, pods placed by kube-scheduler and run by the lab's kubelet, then
// rolled to other images and uninstalled. The package holds only tests.
//
// What an uninstall leaves behind (TestUninstallWithdrawsEverything):
// once `kubectl delete -k manifests/` returns, no node answers ARP or NDP
// for a Service address and the router holds no route Herald advertised
// (each speaker withdraws as it exits; for a peer with gracefulRestart the
// router instead keeps the routes, stale, until the 60 s restart time
// ends). Every Service keeps its status exactly as Herald wrote it:
// status.loadBalancer.ingress holds one entry per address, {ip: ADDRESS,
// ipMode: VIP}, and nothing else; the herald.dev/IPAllocated condition
// stays True, a herald.dev/Announced condition stays True naming the node
// that announced last although nobody does any more, and the annotations
// herald.dev/allocated-from and herald.dev/granted-request stay. A client
// that resolved a layer-2 address before keeps reaching it while its
// neighbour entry lives, because kube-proxy still forwards the address. A
// reinstall finds every address where it was; delete the Services, or
// clear their status, to release the addresses for good.
package deploy

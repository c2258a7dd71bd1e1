package main

// signerChain is the proxy side with -s: no key process per connection;
// the proxy's setuidgid-chroot connects to the signer's socket while
// still root and puts the channel on fd 4, where stunnel-imap -K 4
// expects the key process. The signer gives one chain and one signature
// per connection, and the proxy, once dropped and filtered, can make no
// second one.
func (o *options) signerChain() []string {
	c := []string{"setuidgid-chroot", "-/", o.jail}
	c = append(c, o.ids...)
	c = append(c, o.serverOpen()...)
	c = append(c, "-s", "4:"+o.signer)
	c = append(c, "stunnel-imap", "-n", o.mode.Name, "-F", "3", "-K", "4")
	return append(c, o.proxy...)
}

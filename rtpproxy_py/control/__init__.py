"""Control sockets: transports and the UDP reply cache."""

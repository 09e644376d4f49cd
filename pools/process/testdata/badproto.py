"""A worker that speaks protocol 99, for the handshake check."""
import slither.worker as w

w.PROTOCOL = 99
w.main()

"""Peer chat apps that the load benchmark runs side by side with Parley."""

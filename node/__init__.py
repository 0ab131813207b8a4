"""webrtc-dht node: a sans-IO Kademlia core, its asyncio runtime, transports and a simulator."""

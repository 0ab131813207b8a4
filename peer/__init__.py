"""The node *process* (``dht-node``): the composition root and the control facade."""

"""Topology model and placement scoring (NVLink domains, PCIe/NUMA, tori). Filled by the topology issue."""

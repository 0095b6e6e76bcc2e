//! Sampled packet headers → the flow keys Reflex measures (Ethernet, 802.1Q/QinQ, IPv4, IPv6,
//! TCP, UDP, ICMP, ICMPv6). A truncated header yields the keys that are present.

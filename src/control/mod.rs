//! Control socket: JSON lines between reflexctl and reflexd.

//! The only home of syscalls and unsafe: sockets, recvmmsg/sendmmsg, polling, pinning.

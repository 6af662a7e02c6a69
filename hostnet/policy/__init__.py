"""Pure policy: address management, port allocation, admission. No kernel access here;
what the policies need from the kernel (sysctls, bound sockets) comes in as arguments."""

"""The native shim: C source compiled at install time."""

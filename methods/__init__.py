"""Built-in methods, installed as prunebench.methods and registered through entry points."""

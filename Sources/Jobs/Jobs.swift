// Jobs: the filesystem queue protocol, the worker loop, the kind registry. Imports no model code.

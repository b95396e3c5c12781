// cli tests come next

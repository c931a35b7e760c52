// ArborTokenizers

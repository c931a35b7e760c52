// ArborEngine

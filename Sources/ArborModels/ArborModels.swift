// ArborModels

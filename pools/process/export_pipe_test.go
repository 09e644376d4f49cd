package process

// GrowPipe raises a pipe's kernel buffer as the pool does for its workers'
// pipes, for tests that drive a worker directly.
var GrowPipe = growPipe

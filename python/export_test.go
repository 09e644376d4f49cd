package python

// Extract exposes extract to the tests: Dir does its work once per process.
var Extract = extract

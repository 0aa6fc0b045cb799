// Package deploy holds the files for running Herald in containers
// (nginx.conf here; Dockerfile and docker-compose.yml at the repository
// root) and the tests that check them. It has no code of its own, so the
// test-only dependencies (compose-go) stay out of the herald binary.
package deploy

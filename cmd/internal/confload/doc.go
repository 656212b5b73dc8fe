// Package confload loads a binary's YAML configuration file into its
// config struct and applies overrides from environment variables and
// -set flags, so that every setting can be changed without editing a file.
//
// Precedence: struct defaults < file < environment < -set flags.
// Unknown keys in the file are errors (with file:line); so are unknown
// override paths. Only cmd/ uses this package: library packages never read
// files or the environment.
package confload

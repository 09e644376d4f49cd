package main

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/slither-go/slither/capacity"
)

func TestDoctorText(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, runDoctor(context.Background(), &out, doctorOptions{check: []string{"json"}, measure: true}))
	s := out.String()
	for _, want := range []string{"Interpreters found", "Recommended pools", "process-", "Module checks", "json", "Warnings"} {
		assert.Contains(t, s, want)
	}
}

func TestDoctorJSONAndRequire(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, runDoctor(context.Background(), &out, doctorOptions{json: true, require: "process"}))
	var r capacity.Report
	require.NoError(t, json.Unmarshal(out.Bytes(), &r))
	assert.NotEmpty(t, r.Interpreters)
	assert.Positive(t, r.CPU.Usable)

	err := runDoctor(context.Background(), &bytes.Buffer{}, doctorOptions{require: "warp-drive"})
	assert.ErrorContains(t, err, `--require "warp-drive"`)

	r.Embedded = capacity.Embedded{Reason: "no cgo"}
	r.Interpreters = []capacity.Interpreter{{Path: "/usr/bin/python3", GILEnabled: true}}
	err = requireProfile(&r, "free-threaded")
	assert.Equal(t, 3, exitCode(err))
	assert.NoError(t, requireProfile(&r, "process"))
}

func TestExampleCommand(t *testing.T) {
	var out bytes.Buffer
	cmd := newRoot()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"example"})
	require.NoError(t, cmd.Execute())
	for _, e := range allExamples {
		assert.Contains(t, out.String(), e.Name)
	}
	cmd = newRoot()
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetArgs([]string{"example", "nope"})
	assert.ErrorContains(t, cmd.Execute(), `no example "nope"`)
}

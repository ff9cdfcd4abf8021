# shellcheck shell=bash
# tools/lib.sh: shell functions shared by tools/test and tools/demo (sourced, not run).

# tdm_setup BUILDDIR MESON-OPTIONS...: configure BUILDDIR with these options; an already
# configured directory is reconfigured in place (meson rebuilds only what the change touches).
tdm_setup() {
	local dir=$1
	shift
	if [[ -f "$dir/meson-private/coredata.dat" ]]; then
		meson setup --reconfigure "$dir" "$@"
	else
		meson setup "$dir" "$@"
	fi
}

# The release build in build/. tools/test and tools/demo configure it the same way, so running
# one after the other rebuilds nothing.
tdm_setup_release() {
	tdm_setup build --werror -Dbuildtype=release
}

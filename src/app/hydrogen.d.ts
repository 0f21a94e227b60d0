// hydrogen-view-sdk 0.3 ships no usable type declarations (its README says to declare the module).
declare module "hydrogen-view-sdk";
